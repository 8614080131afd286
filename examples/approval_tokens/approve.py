"""A reviewer's answer: complete the pending approval token of a job from Python.

python approve.py JOB_ID --by ana            # approve
python approve.py JOB_ID --by ana --reject --note "too long"
"""

from __future__ import annotations

import argparse
import asyncio

from jobs import queue


async def main(args: argparse.Namespace) -> None:
    """Find the job's pending token and complete it with the decision."""
    async with queue:
        tokens = await queue.list_tokens(status="pending", job_id=args.job_id)
        if not tokens:
            raise SystemExit(f"job {args.job_id} is not waiting for an approval (yet)")
        decision = {"approved": not args.reject, "by": args.by, "note": args.note}
        await queue.complete_token(tokens[0].id, decision)
        print(f"token {tokens[0].id} completed: {decision}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job_id", type=int)
    parser.add_argument("--by", required=True, help="who decides")
    parser.add_argument("--reject", action="store_true")
    parser.add_argument("--note", default=None)
    asyncio.run(main(parser.parse_args()))
