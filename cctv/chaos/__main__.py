import sys

from cctv.chaos.run import main

sys.exit(main())
