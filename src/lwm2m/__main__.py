from lwm2m.cli import main

main()
