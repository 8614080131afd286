"""`python -m agentqueue`: the same command line as the `agentqueue` script."""

from agentqueue.cli import main

if __name__ == "__main__":
    main()
