"""The framework adapters' own cost per task: `runtime.invoke(payload)` of each LLM framework's adapter against
the same framework agent called directly, as its documentation shows (one agent, reset between tasks where
the framework keeps a conversation), in the same process, against the same local OpenAI-compatible server
(tests/fixtures/openai_server.py): a declarative agent whose task calls one tool, so two model requests a
task. Interleaved, after a warm-up; the median of `--tasks` each. Figures are printed, not asserted. A
framework that is not installed is skipped, naming its extra: CrewAI and CAMEL cannot share an environment
with pydantic-ai and openai-agents, so run this once in each (`.venv` and `.venv-isolated` in .ci/run).

`--in-task` invokes the adapter as the agent's actor does, inside a task context: its tool calls reported and,
for the adapters that stream, the model's text streamed (the direct call is unchanged, so the overhead then
includes streaming).

Run from the repository root: `.venv/bin/python bench/frameworks.py [--tasks 20] [--in-task]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
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
from frameworks.context import TaskContext, running  # noqa: E402
from tests.fixtures.openai_server import OpenAIServer, serve  # noqa: E402

MODULES = {
    "pydantic-ai": "pydantic_ai",
    "openai-agents": "agents",
    "autogen": "autogen_agentchat",
    "smolagents": "smolagents",
    "crewai": "crewai",
    "camelai": "camel",
}
INSTRUCTIONS = "Use the tool."
PROMPT = "Weather in Paris?"


def _spec(framework: str, url: str) -> AgentSpec:
    return AgentSpec(
        id="bench",
        name="Weather",
        framework=framework,
        mode="hosted",
        version="1",
        configuration={
            "instructions": INSTRUCTIONS,
            "tools": ["tests.fixtures.agent_tools:get_weather"],
            "llm": {"base_url": url, "api_key": "local", "model": "local"},
        },
        code_modules=("tests.fixtures",),
        http_allowed=("127.0.0.1",),
    )


def _direct(framework: str, url: str, loop: asyncio.AbstractEventLoop) -> Callable[[], Any]:
    """The framework called as its own documentation shows, with the same model on the same server."""
    from tests.fixtures.agent_tools import get_weather

    return DIRECT[framework](url, loop, get_weather)


def _pydantic_ai(url: str, loop: asyncio.AbstractEventLoop, tool: Callable[..., str]) -> Callable[[], Any]:
    from openai import AsyncOpenAI
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = AsyncOpenAI(base_url=url, api_key="local")
    model = OpenAIChatModel("local", provider=OpenAIProvider(openai_client=client))
    agent = Agent(model, instructions=INSTRUCTIONS, tools=[tool])
    return lambda: loop.run_until_complete(agent.run(PROMPT)).output


def _openai_agents(url: str, loop: asyncio.AbstractEventLoop, tool: Callable[..., str]) -> Callable[[], Any]:
    from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, function_tool
    from openai import AsyncOpenAI

    model = OpenAIChatCompletionsModel(model="local", openai_client=AsyncOpenAI(base_url=url, api_key="local"))
    agent = Agent(name="Weather", instructions=INSTRUCTIONS, tools=[function_tool(tool)], model=model)
    config = RunConfig(tracing_disabled=True)
    return lambda: loop.run_until_complete(Runner.run(agent, PROMPT, run_config=config)).final_output


def _autogen(url: str, loop: asyncio.AbstractEventLoop, tool: Callable[..., str]) -> Callable[[], Any]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core import CancellationToken
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    info = {"vision": False, "function_calling": True, "json_output": True, "structured_output": True}
    client = OpenAIChatCompletionClient(model="local", base_url=url, api_key="local", model_info=info | {"family": "x"})
    agent = AssistantAgent("Weather", client, tools=[tool], system_message=INSTRUCTIONS, reflect_on_tool_use=True)

    async def run() -> Any:
        await agent.on_reset(CancellationToken())
        return (await agent.run(task=PROMPT)).messages[-1].content

    return lambda: loop.run_until_complete(run())


def _smolagents(url: str, loop: asyncio.AbstractEventLoop, tool: Callable[..., str]) -> Callable[[], Any]:
    from smolagents import OpenAIServerModel, ToolCallingAgent
    from smolagents import tool as smol_tool

    model = OpenAIServerModel(model_id="local", api_base=url, api_key="local")
    agent = ToolCallingAgent(tools=[smol_tool(tool)], model=model, instructions=INSTRUCTIONS, verbosity_level=-1)
    return lambda: agent.run(PROMPT, reset=True)


def _crewai(url: str, loop: asyncio.AbstractEventLoop, tool: Callable[..., str]) -> Callable[[], Any]:
    from frameworks.crewai import QUIET

    os.environ.update(QUIET)  # as the adapter does: nothing to CrewAI's collector
    from crewai import LLM, Agent, Crew, Task
    from crewai.tools import tool as crew_tool

    llm = LLM(model="local", custom_openai=True, base_url=url, api_key="local")
    agent = Agent(role="Weather", goal="Answer.", backstory=INSTRUCTIONS, tools=[crew_tool(tool)], llm=llm)
    crew = Crew(agents=[agent], tasks=[Task(description="{input}", expected_output="An answer.", agent=agent)])
    return lambda: crew.kickoff(inputs={"input": PROMPT}).raw


def _camelai(url: str, loop: asyncio.AbstractEventLoop, tool: Callable[..., str]) -> Callable[[], Any]:
    from camel.agents import ChatAgent
    from camel.models import ModelFactory
    from camel.toolkits import FunctionTool
    from camel.types import ModelPlatformType

    from frameworks.camelai import _approximate_counter

    model = ModelFactory.create(
        model_platform=ModelPlatformType.OPENAI_COMPATIBLE_MODEL,
        model_type="local",
        url=url,
        api_key="local",
        token_counter=_approximate_counter(),  # tiktoken would download its encodings
    )
    agent = ChatAgent(system_message=INSTRUCTIONS, model=model, tools=[FunctionTool(tool)])

    def run() -> Any:
        agent.reset()
        return agent.step(PROMPT).msgs[-1].content

    return run


DIRECT = {
    "pydantic-ai": _pydantic_ai,
    "openai-agents": _openai_agents,
    "autogen": _autogen,
    "smolagents": _smolagents,
    "crewai": _crewai,
    "camelai": _camelai,
}


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--in-task",
        action="store_true",
        help="invoke as the agent's actor does, inside a task context: tool calls reported, text streamed",
    )
    args = parser.parse_args()
    mode = "inside a task context (output pieces gathered, streaming on)" if args.in_task else "plain invoke"
    print(f"median of {args.tasks} tasks each (one tool call, two model requests a task), local server; {mode}")
    print(f"{'framework':<15}{'direct ms':>11}{'adapter ms':>12}{'overhead ms':>13}{'adapter/direct':>16}")
    with serve(OpenAIServer(answer="Forecast:")) as url:
        for framework, module in MODULES.items():
            if importlib.util.find_spec(module) is None:
                print(f"{framework:<15}skipped: pip install -e '.[{framework}]'")
                continue
            loop = asyncio.new_event_loop()
            direct = _direct(framework, url, loop)
            runtime = adapter_for(framework).load(_spec(framework, url))

            def adapted(runtime: Any = runtime) -> Any:
                if not args.in_task:
                    return runtime.invoke({"input": PROMPT})
                pieces: list[dict[str, Any]] = []  # what the actor's TaskOutput would send to the store
                with running(TaskContext("bench", emit=pieces.append)):
                    return runtime.invoke({"input": PROMPT})

            try:
                for _ in range(args.warmup):
                    answer, result = direct(), adapted()
                if answer != result["output"]:  # the same work, or the comparison means nothing
                    raise SystemExit(f"{framework}: direct {answer!r} != adapter {result['output']!r}")
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
