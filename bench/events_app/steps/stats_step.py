"""GET /bench/latency: emit-to-handler latency percentiles since the last reset (?reset=1)."""

from steps.bench_state import LATENCIES_NS
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="BenchLatency", method="GET", path="/bench/latency")


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Percentiles in ms (p50, p90, p99, p99.9, max) and the sample count."""
    values = sorted(LATENCIES_NS)
    if req.query_params.get("reset"):
        LATENCIES_NS.clear()
    n = len(values)
    body: dict[str, float] = {"samples": n}
    if n:
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
            body[name] = values[min(n - 1, int(q * n))] / 1e6
        body["max"] = values[-1] / 1e6
    return ApiResponse(status=200, body=body)
