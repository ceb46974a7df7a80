from covkb.command import main

main()
