from zmsg.cli import main

raise SystemExit(main())
