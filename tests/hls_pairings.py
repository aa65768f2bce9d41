"""The four backend x io-style pairings and how a model matrix is spread over them in CI."""

PAIRINGS = [(backend, io) for backend in ("vitis", "catapult") for io in ("parallel", "stream")]


def parametrize_rotating(metafunc, fixture: str, configs) -> None:
    """CI: each config on one pairing, rotating so every pairing meets many; --hls-full: all four."""
    if fixture not in metafunc.fixturenames:
        return
    full = metafunc.config.getoption("--hls-full")
    cases = [(config, *pairing) for i, config in enumerate(configs)
             for pairing in (PAIRINGS if full else [PAIRINGS[i % len(PAIRINGS)]])]
    metafunc.parametrize(fixture, cases, ids=[f"{c.id}-{b}-{io}" for c, b, io in cases])
