"""Read side: log readers that cluster articles into stories and project the log into dashboard tables."""
