"""The command line: ``python -m bigmodel_fast`` or ``bigmodel-fast``.

    bigmodel-fast                  setup, and native vs reference on one small shape of each kernel
    bigmodel-fast bench [--quick]  the standard shapes: checked, then timed against the reference and torch
    bigmodel-fast bench --wider    the same for a wider set of shapes (no targets)
    bigmodel-fast info             version, backend, OpenMP, threads, ISA, build, NumPy and its BLAS

The work is done in bigmodel_fast._bench; this module only parses arguments.
"""

import argparse
import os
import sys

from .bench_shapes import DTYPES, KERNELS


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bigmodel-fast",
        description="bigmodel_fast: fast CPU kernels for a tanh RNN and softmax attention. "
                    "Without a command: the setup and a quick native-vs-reference comparison.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = sub.add_parser(
        "bench", help="benchmark the standard shapes against the NumPy reference and torch",
        description="For every standard shape: check the native result against "
                    "bigmodel_fast.reference (SPEC tolerances), then time native, reference "
                    "and torch (when installed) interleaved in one process and report medians. "
                    "Exits 1 when any native result is wrong.")
    bench.add_argument("--quick", action="store_true",
                       help="smaller shapes and fewer repeats (about 70 s on 2 cores)")
    bench.add_argument("--wider", action="store_true",
                       help="a wider set of shapes instead of the targets' (bench_shapes."
                            "WIDER_SHAPES: batch and hidden sizes up to 1024, few query rows "
                            "over long keys, odd head sizes; about 4 minutes on 2 cores)")
    bench.add_argument("--kernel", choices=KERNELS, help="only this kernel's shapes")
    bench.add_argument("--dtype", choices=DTYPES, help="only shapes of this dtype")
    bench.add_argument("--shapes", metavar="NAME,...",
                       help="only these shapes, by name (e.g. rnn-small,attn-long); with "
                            "--quick, their quick variants (rnn-long runs rnn-long-quick)")
    bench.add_argument("--threads", metavar="N,...",
                       help="thread counts; several give a thread-scaling sweep "
                            "(default: bigmodel_fast.get_num_threads())")
    bench.add_argument("--repeats", type=_positive_int, metavar="N",
                       help="timed samples per implementation (default 9; 5 with --quick)")
    bench.add_argument("--sample-time", type=float, metavar="SECONDS",
                       help="minimum length of one sample: fast calls are repeated within a "
                            "sample until it lasts this long (default 0.05; 0.02 with --quick)")
    bench.add_argument("--settle", type=float, metavar="SECONDS",
                       help="pause before each timed sample, so that other libraries' "
                            "worker threads (OpenBLAS spins 2**28 cycles, 0.13 s at 2.1 GHz, "
                            "after a call) are idle, then 0.1 s of untimed calls, as the "
                            "first after a pause run slow; 0 for neither (default 0.2)")
    bench.add_argument("--no-torch", action="store_true", help="skip torch even when installed")
    bench.add_argument("--json", metavar="PATH",
                       help="write every row and the machine's description as JSON")
    bench.add_argument("--plot", metavar="PATH",
                       help="write a PNG of the speedups (and thread scaling); needs matplotlib")

    sub.add_parser("info", help="version, backend, OpenMP, threads, ISA, build, NumPy and BLAS",
                   description="Print what bigmodel_fast runs with and how it was built.")
    return parser


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv=None):
    """Entry point; returns the exit status (the console script exits with it)."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(args_list)
    from . import _bench   # after parsing: --help stays fast and import-light
    try:
        if args.command == "bench":
            return _bench.bench_command(args, ["bigmodel-fast"] + args_list)
        if args.command == "info":
            print("\n".join(_bench.info_lines()))
            return 0
        return _bench.summary_command()
    except BrokenPipeError:
        # The reader left (`bigmodel-fast info | head`): no traceback, and
        # none either when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
