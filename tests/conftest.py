"""Options for the whole suite."""


def pytest_addoption(parser):
    parser.addoption(
        "--hls-full", action="store_true",
        help="run every lowering-matrix model through all 8 HLS variants (backend x io x reuse), "
             "not the 4 that cover each pairing per model (about 2x the compile time)",
    )
