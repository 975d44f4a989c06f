"""Start the reference recommendation service.

    python examples/recsys_service/serve.py --port 8000
    python examples/recsys_service/serve.py --port 8000 --data /work/shared/data/movielens-100k

Binds to 127.0.0.1 by default; one uvicorn worker (the serving bundle lives in the process).
Then e.g.::

    curl -s localhost:8000/health
    curl -s -XPOST localhost:8000/recommend -H 'content-type: application/json' -d '{"user_ids": [1, 2], "k": 5}'
    curl -s -XPOST localhost:8000/admin/swap -H 'content-type: application/json' -d '{}'
    curl -s -XPOST localhost:8000/admin/inventory -H 'content-type: application/json' -d '{"out_of_stock": [101]}'
    curl -s localhost:8000/metrics
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data", default="synthetic", help="'synthetic' (default) or a MovieLens-100K folder")
    p.add_argument("--users", type=int, default=400, help="synthetic users")
    p.add_argument("--items", type=int, default=300, help="synthetic items")
    p.add_argument("--epochs", type=int, default=4, help="two-tower training epochs per bundle")
    p.add_argument("--seed", type=int, default=0, help="first bundle's two-tower seed")
    p.add_argument(
        "--admin-token",
        default=os.environ.get("RECSYS_ADMIN_TOKEN"),
        help="require this X-Admin-Token on /admin/* (default: $RECSYS_ADMIN_TOKEN, else none)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads; 1 avoids oversubscription with concurrent request threads",
    )
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    import uvicorn
    from recsys_app import RecsysService, ServiceConfig, create_app

    torch.set_num_threads(max(1, args.torch_threads))
    t0 = time.perf_counter()
    cfg = ServiceConfig(data=args.data, n_users=args.users, n_items=args.items, epochs=args.epochs)
    service = RecsysService(cfg, seed=args.seed, admin_token=args.admin_token)
    b = service.bundle
    print(
        f"recsys service: {b.version} digest={b.digest} items={b.item_ids.shape[0]} "
        f"built in {time.perf_counter() - t0:.1f} s; http://{args.host}:{args.port}",
        flush=True,
    )
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level=args.log_level, workers=1)


if __name__ == "__main__":
    main()
