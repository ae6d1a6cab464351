"""`python -m jepardy`: the `jepardy` command, for an environment whose scripts are not on
PATH."""

from jepardy.cli.app import main

main()
