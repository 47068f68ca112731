from wearwatch.cli import main

main()
