from ledgerflow.api.cli import main

main()
