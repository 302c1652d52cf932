import sys

from dropzone.cli import main

sys.exit(main())
