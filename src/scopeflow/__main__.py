from scopeflow.cli import main

main()
