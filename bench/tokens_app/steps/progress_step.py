"""GET /bench/tokens: the workload's progress (answers done, tokens written, worst lateness)."""

from steps.tokens_step import _failures, _progress, _tasks
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="BenchTokensProgress", method="GET", path="/bench/tokens")


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    body = {**_progress, "running": len(_tasks), "failed": _failures[:5]}
    return ApiResponse(status=200, body=body)
