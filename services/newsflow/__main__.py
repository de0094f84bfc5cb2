from newsflow.app.cli import main

main()
