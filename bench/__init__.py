"""The parts of `make bench` (the entry point is scripts/bench.py, which runs the scenarios).

- procfs.py    per-process CPU time and RSS from /proc; finds the stack's and PostgreSQL's processes
- stack.py     databases for the run, the shop via scripts/run_local.py, the second (cached) gateway
               and the baseline, all as real processes on free ports
- baseline.py  the bare baseline: FastAPI + uvicorn + one SQL query per request (`python -m bench.baseline`)
- hop.py       the architecture's floor: the shop's product read, list, cart read and cart add done by a
               bare FastAPI front and bare gRPC back ends (real messages, none of the shop's code): how
               close a gateway + gRPC design can get
- wrk.py       the compiled load generator of every window: installs wrk, writes its Lua scripts
               (per-request rotation; cart add's guest carts; one order per buyer for checkout; JSON
               summary in done()), runs it and reads its CPU time
- flows.py     the asyncio httpx client that makes the data beforehand (stock, guest carts, buyers)
- report.py    the printed table, the RSS list and the JSON file under var/bench/
"""
