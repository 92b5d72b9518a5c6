"""``python -m paasport``: the same as the ``paasport`` console script."""

from paasport.cli.main import main

main()
