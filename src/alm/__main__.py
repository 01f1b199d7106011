from alm.cli.app import main

main()
