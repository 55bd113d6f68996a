"""`butler-mcp`: Butler's tools over MCP stdio, for OpenClaw (`openclaw mcp add butler --command butler-mcp`)
and any other MCP host. The tool list is skill.yaml; each call goes through the same dispatch as the CLI
and returns the JSON envelope as text content (hosts may not forward structured content to the model).
Each tool also publishes its output schema (`outputSchema`), and a successful call returns its result as
`structuredContent` beside the text, as the MCP revision of 2025-06-18 and later describe; an error keeps
only the envelope as text, with `isError`.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from butler_skill import __version__
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.host.manifest import Manifest, ToolSpec, load_manifest
from butler_skill.host.redaction import install_log_redaction

log = logging.getLogger("butler.mcp")

INSTRUCTIONS = (
    "Butler is this agent's CFO. Call allocate_tokens before expensive work and record_usage after each "
    "provider response; act on rotation alerts; use plan_agents / submit_result for sub-agents. Tools "
    "marked as spending money need your person's approval. Never ask for, print or store API keys."
)


def describe(tool: ToolSpec) -> str:
    notes = []
    if tool.spends_money:
        notes.append("Can move money: ask your person first; Butler never approves on its own.")
    elif tool.mutates:
        notes.append("Changes Butler's ledger.")
    return " ".join([tool.description, *notes])


def tool_list(manifest: Manifest) -> list[types.Tool]:
    tools = []
    for spec in manifest.tools:
        schema = json.loads(manifest.schema_path(spec.input_schema).read_text("utf-8"))
        output = json.loads(manifest.schema_path(spec.output_schema).read_text("utf-8"))
        tools.append(types.Tool(
            name=spec.name,
            description=describe(spec),
            input_schema=schema,
            output_schema=output,
            annotations=types.ToolAnnotations(
                title=spec.name.replace("_", " "),
                read_only_hint=not spec.mutates,
                destructive_hint=spec.spends_money,
                idempotent_hint=not spec.mutates,
            ),
        ))
    return tools


def build_server(ctx: Context, manifest: Manifest | None = None) -> Server[Any]:
    manifest = manifest or load_manifest()
    listed = tool_list(manifest)

    async def on_list_tools(_: Any, __: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def on_call_tool(_: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        # Handlers block on SQLite and HTTP; run them off the event loop so the server keeps reading.
        envelope = await anyio.to_thread.run_sync(
            partial(call_tool, params.name, params.arguments or {}, ctx, manifest)
        )
        text = [types.TextContent(text=json.dumps(envelope, indent=2, allow_nan=False))]
        if not envelope["ok"]:
            return types.CallToolResult(content=text, is_error=True)
        # The result validated against the output schema in dispatch: it is the structured content.
        return types.CallToolResult(content=text, structured_content=envelope["result"], is_error=False)

    return Server(
        manifest.name,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


async def serve(ctx: Context) -> None:
    server = build_server(ctx)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> int:
    ctx = Context()
    # stdout is the protocol channel: logs go to stderr, through the redaction filter.
    try:
        install_log_redaction(ctx, stream=sys.stderr)  # stdout carries the protocol
    except OSError as exc:  # BUTLER_LOG_FILE cannot be opened: one line a person can act on, no traceback
        print(f"butler-mcp: config_error: cannot use {exc.filename or 'the log file'}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    try:
        anyio.run(serve, ctx)
    except KeyboardInterrupt:
        pass
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
