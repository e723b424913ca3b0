# ruff: noqa: RUF001 - Motia's template logs use an en dash; the files are kept as Motia ships them
"""Motia Python step files, as a Motia user has them, written into a project by the tests.

Adapted from Motia's own Python project template (``ApiTrigger`` -> ``SetStateChange`` ->
``CheckStateChange``, steps named ``01-api.step.py`` and so on) and the cron and stream examples
of its docs: dict configs, ``req.get("body")``, ``context.emit({...})``, ``context.state``,
``{"status", "body"}`` returns, ``getGroup``. Kept as text: they are the user's files, not ours,
so they are not held to this repository's lint and type rules.
"""

__all__ = ["MOTIA_STEPS"]

API_STEP = """
config = {
  "type": "api",
  "name": "ApiTrigger",
  "description": "test state",

  "path": "/default",
  "method": "POST",

  # This API Step emits events to topic `test-state`
  "emits": ["test-state"],

  # Expected request body for type checking and documentation
  "bodySchema": {
    "type": "object",
    "properties": { "name": { "type": "string" } }
  },

  # Expected response body for type checking and documentation
  "responseSchema": {
    "200": {
      "type": "object",
      "properties": {
        "traceId": { "type": "string" },
        "message": { "type": "string" }
      }
    }
  },

  # The virtual subscribes this step has, will be available in Workbench
  "virtualSubscribes": ["/default"],

  # The flows this step belongs to, will be available in Workbench
  "flows": ["default"],
}

async def handler(req, context):
  context.logger.info('Step 01 – Processing API Step', { "body": req.get("body") })

  await context.emit({
    "topic": 'test-state',
    "data": { "message": req.get("body").get("message") },
  })

  return {
    "status": 200,
    "body": {
      "traceId": context.trace_id,
      "message": 'test-state topic emitted'
    },
  }
"""

SET_STATE_STEP = """
config = {
  "type": "event",
  "name": "SetStateChange",
  "description": "set a state change for evaluation",

  "subscribes": ["test-state"],
  "emits": ['check-state-change'],

  "input": {
    "type": "object",
    "properties": { "message": { "type": "string" } }
  },

  "flows": ['default'],
}

async def handler(input, context):
  context.logger.info('Step 02 – Pushing message content to state', { "input": input })

  message = 'Welcome to motia!'

  await context.state.set(context.trace_id, 'test', message)

  await context.emit({
    "topic": 'check-state-change',
    "data": { "key": 'test', "expected": message }
  })
"""

CHECK_STATE_STEP = """
config = {
  "type": "event",
  "name": "CheckStateChange",
  "description": "check state change",

  "subscribes": ["check-state-change"],

  # Doesn't emit anything, which means this is a final step in a workflow
  "emits": [],

  "input": {
    "type": "object",
    "properties": {
      "key": { "type": "string" },
      "expected": { "type": "string" }
    }
  },

  "flows": ["default"],
}

async def handler(input, context):
  context.logger.info("Step 03 – Executing CheckStateChange step", { "input": input })

  value = await context.state.get(context.trace_id, input.get("key"))

  if value != input.get("expected"):
    context.logger.error("The provided value for the state key does not match", {
      "key": input.get("key"),
      "value": value,
      "expected": input.get("expected")
    })
  else:
    context.logger.info("The provided value matches the state value 🏁", {
      "key": input.get("key"),
      "value": value,
    })
"""

CRON_STEP = """
config = {
    "type": "cron",
    "name": "PeriodicJob",
    "description": "Runs every second and emits a timestamp",
    "cron": "* * * * * *",
    "emits": ["cron-ticked"],
    "flows": ["cron-example"],
}

async def handler(context):
    await context.emit({
        "topic": "cron-ticked",
        "data": {"message": "Cron job executed"},
    })
"""

CRON_LISTENER_STEP = """
import time

config = {
    "type": "event",
    "name": "OnCronTicked",
    "subscribes": ["cron-ticked"],
    "emits": [],
    "input": {"type": "object", "properties": {"message": {"type": "string"}}},
    "flows": ["cron-example"],
    "infrastructure": {"queue": {"maxRetries": 2}},
}

async def handler(input, context):
    await context.state.set("cron-ticks", context.trace_id, {"message": input["message"], "at": time.time()})
"""

TODO_STREAM = """
config = {
    "name": "todo",
    "schema": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
        "required": ["text"],
    },
    "baseConfig": {"storageType": "default"},
}
"""

TODO_API_STEP = """
config = {
    "type": "api",
    "name": "AddTodo",
    "path": "/lists/:listId/todos",
    "method": "POST",
    "emits": ["todo.added"],
    "flows": ["todos"],
}

async def handler(req, ctx):
    list_id = req["pathParams"]["listId"]
    todo_id = req.get("queryParams", {}).get("id", "t1")
    todo = await ctx.streams.todo.set(list_id, todo_id, {"id": todo_id, "text": req["body"]["text"]})
    await ctx.emit({"topic": "todo.added", "data": {"listId": list_id, "id": todo_id}})
    return {"status": 201, "body": {"todo": todo, "agent": req["headers"].get("user-agent", "")}}
"""

TODO_COUNT_STEP = """
config = {
    "type": "event",
    "name": "CountTodos",
    "subscribes": ["todo.added"],
    "emits": [],
    "flows": ["todos"],
}

async def handler(input, ctx):
    todos = await ctx.streams.todo.getGroup(input["listId"])
    await ctx.state.set("todo-counts", input["listId"], len(todos))
    ctx.logger.info("counted todos", {"listId": input["listId"], "count": len(todos)})
"""

MOTIA_STEPS = {
    "steps/01-api.step.py": API_STEP,
    "steps/02-test-state.step.py": SET_STATE_STEP,
    "steps/03_check_state_change_step.py": CHECK_STATE_STEP,
    "steps/cron/periodic_job.step.py": CRON_STEP,
    "steps/cron/on_cron_ticked_step.py": CRON_LISTENER_STEP,
    "steps/todos/todo.stream.py": TODO_STREAM,
    "steps/todos/add_todo_step.py": TODO_API_STEP,
    "steps/todos/count_todos_step.py": TODO_COUNT_STEP,
}
