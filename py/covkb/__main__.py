from covkb.surfaces.main import main

main()
