"""The cleaning stage: main text out of HTML, site chrome out of scraped text, metadata kept aside."""
