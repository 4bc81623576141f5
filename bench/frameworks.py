"""The framework adapters' own cost per task: `runtime.invoke(payload)` of the `pydantic-ai` and
`openai-agents` adapters against the same framework agent called directly (`await agent.run(prompt)`,
`await Runner.run(agent, prompt)` on an event loop of the caller's), in the same process, against the same
local OpenAI-compatible server (tests/fixtures/openai_server.py): a declarative agent whose task calls one
tool, so two model requests a task. Interleaved, after a warm-up; the median of `--tasks` each. Figures are
printed, not asserted. A framework that is not installed is skipped, naming its extra.

Run from the repository root: `.venv/bin/python bench/frameworks.py [--tasks 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The repository root instead of bench/, whose agents.py would shadow the OpenAI Agents SDK's `agents`.
sys.path[0] = str(ROOT)
from frameworks import AgentSpec, adapter_for  # noqa: E402
from tests.fixtures.openai_server import OpenAIServer, serve  # noqa: E402

MODULES = {"pydantic-ai": "pydantic_ai", "openai-agents": "agents"}
PROMPT = "Weather in Paris?"


def _spec(framework: str, url: str) -> AgentSpec:
    return AgentSpec(
        id="bench",
        name="Weather",
        framework=framework,
        mode="hosted",
        version="1",
        configuration={
            "instructions": "Use the tool.",
            "tools": ["tests.fixtures.agent_tools:get_weather"],
            "llm": {"base_url": url, "api_key": "local", "model": "local"},
        },
        code_modules=("tests.fixtures",),
        http_allowed=("127.0.0.1",),
    )


def _direct(framework: str, url: str, loop: asyncio.AbstractEventLoop) -> Callable[[], Any]:
    """The framework called as its own documentation shows, with the same model on the same server."""
    from openai import AsyncOpenAI

    from tests.fixtures.agent_tools import get_weather

    client = AsyncOpenAI(base_url=url, api_key="local")
    if framework == "pydantic-ai":
        from pydantic_ai import Agent
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        model = OpenAIChatModel("local", provider=OpenAIProvider(openai_client=client))
        agent = Agent(model, instructions="Use the tool.", tools=[get_weather])
        return lambda: loop.run_until_complete(agent.run(PROMPT)).output
    from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, function_tool

    model = OpenAIChatCompletionsModel(model="local", openai_client=client)
    oa_agent = Agent(name="Weather", instructions="Use the tool.", tools=[function_tool(get_weather)], model=model)
    config = RunConfig(tracing_disabled=True)
    return lambda: loop.run_until_complete(Runner.run(oa_agent, PROMPT, run_config=config)).final_output


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    print(f"median of {args.tasks} tasks each (one tool call, two model requests a task), local server")
    print(f"{'framework':<15}{'direct ms':>11}{'adapter ms':>12}{'overhead ms':>13}{'adapter/direct':>16}")
    with serve(OpenAIServer(answer="Forecast:")) as url:
        for framework, module in MODULES.items():
            if importlib.util.find_spec(module) is None:
                print(f"{framework:<15}skipped: pip install -e '.[{framework}]'")
                continue
            loop = asyncio.new_event_loop()
            direct = _direct(framework, url, loop)
            runtime = adapter_for(framework).load(_spec(framework, url))
            adapted = lambda runtime=runtime: runtime.invoke({"input": PROMPT})  # noqa: E731
            try:
                for _ in range(args.warmup):
                    direct(), adapted()
                direct_ms, adapter_ms = [], []
                for _ in range(args.tasks):  # interleaved: the machine's noise falls on both alike
                    direct_ms.append(_timed(direct))
                    adapter_ms.append(_timed(adapted))
            finally:
                runtime.close()
                loop.close()
            d, a = statistics.median(direct_ms), statistics.median(adapter_ms)
            print(f"{framework:<15}{d:>11.2f}{a:>12.2f}{a - d:>13.2f}{a / d:>15.2f}x")


if __name__ == "__main__":
    main()
