from propylon.cli import main

main()
