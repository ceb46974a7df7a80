from covkb.cli import main

main()
