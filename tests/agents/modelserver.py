#!/usr/bin/env python3
"""A scripted model server for the agent contract suite: the real agent CLIs talk to it on
127.0.0.1 instead of a model API (none is reachable from the test machines).

  modelserver.py serve --log FILE --ready FILE [--dump DIR]
  modelserver.py env --cli PRESET --url http://127.0.0.1:PORT --home DIR

It speaks Anthropic Messages, OpenAI Responses, OpenAI Chat Completions and Gemini
generateContent, and decides each answer from the conversation alone (stateless):

- builder ("You are the builder" in the prompt): make the file of the last
  `CONTRACT-WRITE <path> <word>` contain `<word>\\n` with the CLI's own write tool (Read first
  where the tool insists), then say "Wrote <path>.". aider gets an edit block in its format.
- verifier ("You are the independent verifier"): with `CONTRACT-TRY-WRITE <path>`, first try to
  write that file (a read-only mode must refuse), then answer the verdict JSON; with
  `CONTRACT-REJECT <path> <word>` in "verification round 1", reject with the issue
  `CONTRACT-WRITE <path> <word>`, which the builder's fix attempt then carries out.
- anything else (titles, summaries, quota checks) is a side call: a short plain text.

Every response carries usage input = 1000 + 10 * n, output = 50 + n, n = requests served
before it, so a test can match what a CLI reports with what the server sent; each request is
logged as one JSON line (see `log_line`).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

BUILDER = "You are the builder"
VERIFIER = "You are the independent verifier"
# Quotes are left out of the words: opencode run hands its prompt over in double quotes.
WRITE_RE = re.compile(r"CONTRACT-WRITE ([^\s\"'`]+) ([^\s\"'`]+)")
TRY_WRITE_RE = re.compile(r"CONTRACT-TRY-WRITE ([^\s\"'`]+)")
REJECT_RE = re.compile(r"CONTRACT-REJECT ([^\s\"'`]+) ([^\s\"'`]+)")
ROUND_RE = re.compile(r"verification round (\d+)", re.I)
MODEL = "contract-model"
SIDE_TEXT = "Contract run"


# --- the conversation, whatever API it came in -------------------------------------------


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    texts: list[str] = field(default_factory=list)  # text the user or model wrote
    calls: list[str] = field(default_factory=list)  # names of the tool calls the model made
    results: list[str] = field(default_factory=list)  # tool results sent back


@dataclass
class Tool:
    name: str
    kind: str  # "function", or "custom" for a Responses freeform tool (codex apply_patch)
    params: dict  # JSON schema properties
    required: tuple = ()

    @staticmethod
    def of(name: str, kind: str, schema: dict | None) -> "Tool":
        schema = schema or {}
        props, required = schema.get("properties") or {}, schema.get("required") or ()
        return Tool(name, kind, props, tuple(required))


@dataclass
class Conversation:
    api: str
    stream: bool
    system: str
    turns: list[Turn]
    tools: dict[str, Tool]
    schema: dict | None = None  # a side call that must answer JSON in this shape

    def all_text(self) -> str:
        parts = [self.system]
        for t in self.turns:
            parts += t.texts
        return "\n".join(parts)


def flatten(content) -> str:
    """Text of a content value in any of the APIs' shapes (string, list of blocks, dict)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(flatten(c) for c in content)
    if isinstance(content, dict):
        for key in ("text", "content", "output", "result", "error", "llmContent"):
            if key in content:
                return flatten(content[key])
        return json.dumps(content)
    return str(content)


# --- parsing, one function per API ------------------------------------------------------


def parse_anthropic(body: dict, path: str) -> Conversation:
    turns = []
    for m in body.get("messages", []):
        t = Turn(m.get("role", "user"))
        content = m.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for b in blocks:
            if b.get("type") == "text":
                t.texts.append(b.get("text", ""))
            elif b.get("type") == "tool_use":
                t.calls.append(b.get("name", ""))
            elif b.get("type") == "tool_result":
                t.results.append(flatten(b.get("content")))
        turns.append(t)
    tools = {}
    for x in body.get("tools") or []:
        if "name" in x:
            tools[x["name"]] = Tool.of(x["name"], "function", x.get("input_schema"))
    fmt = (body.get("output_config") or {}).get("format") or {}
    schema = fmt.get("schema") if fmt.get("type") == "json_schema" else None
    return Conversation("anthropic", bool(body.get("stream")), flatten(body.get("system")),
                        turns, tools, schema)


def parse_responses(body: dict, path: str) -> Conversation:
    turns: list[Turn] = []

    def turn(role: str) -> Turn:
        # Tool calls and their outputs come as separate items: fold them into turns.
        if not turns or turns[-1].role != role:
            turns.append(Turn(role))
        return turns[-1]

    items = body.get("input") or []
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    for it in items:
        typ = it.get("type", "message")
        if typ == "message":
            role = "assistant" if it.get("role") == "assistant" else "user"
            if it.get("role") in ("system", "developer"):
                continue
            turn(role).texts.append(flatten(it.get("content")))
        elif typ in ("function_call", "custom_tool_call", "local_shell_call"):
            turn("assistant").calls.append(it.get("name", typ))
        elif typ in ("function_call_output", "custom_tool_call_output"):
            turn("user").results.append(flatten(it.get("output")))
    tools = {}
    for x in body.get("tools") or []:
        name = x.get("name") or (x.get("function") or {}).get("name") or x.get("type")
        kind = "custom" if x.get("type") == "custom" else "function"
        tools[name] = Tool.of(name, kind, x.get("parameters"))
    system = flatten(body.get("instructions"))
    system += "\n".join(flatten(i.get("content")) for i in items
                        if i.get("role") in ("system", "developer"))
    return Conversation("responses", bool(body.get("stream")), system, turns, tools)


def parse_chat(body: dict, path: str) -> Conversation:
    turns, system = [], []
    for m in body.get("messages", []):
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(flatten(m.get("content")))
        elif role == "assistant":
            t = Turn("assistant", [flatten(m.get("content"))] if m.get("content") else [])
            t.calls = [c.get("function", {}).get("name", "") for c in m.get("tool_calls") or []]
            turns.append(t)
        elif role == "tool":
            turns.append(Turn("user", results=[flatten(m.get("content"))]))
        else:
            turns.append(Turn("user", [flatten(m.get("content"))]))
    tools = {}
    for x in body.get("tools") or []:
        f = x.get("function") or {}
        if "name" in f:
            tools[f["name"]] = Tool.of(f["name"], "function", f.get("parameters"))
    return Conversation("chat", bool(body.get("stream")), "\n".join(system), turns, tools)


def parse_gemini(body: dict, path: str) -> Conversation:
    stream = ":streamGenerateContent" in path  # Gemini says it in the path, not the body
    turns = []
    for c in body.get("contents", []):
        t = Turn("assistant" if c.get("role") == "model" else "user")
        for p in c.get("parts", []):
            if "text" in p and not p.get("thought"):
                t.texts.append(p["text"])
            elif "functionCall" in p:
                t.calls.append(p["functionCall"].get("name", ""))
            elif "functionResponse" in p:
                t.results.append(flatten(p["functionResponse"].get("response")))
        turns.append(t)
    tools = {}
    for group in body.get("tools") or []:
        for f in group.get("functionDeclarations") or group.get("function_declarations") or []:
            schema = f.get("parametersJsonSchema") or f.get("parameters")
            tools[f["name"]] = Tool.of(f["name"], "function", schema)
    system = flatten((body.get("systemInstruction") or {}).get("parts"))
    config = body.get("generationConfig") or {}
    schema = None
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
    return Conversation("gemini", stream, system, turns, tools, schema)


# --- deciding the answer ----------------------------------------------------------------


@dataclass
class Reply:
    kind: str  # builder, verifier, side
    text: str = ""
    calls: list[tuple[str, object]] = field(default_factory=list)  # (tool, args dict or str)
    label: str = "text"  # what the log says: text, tool:<Name>, aider-edit


# The write tools the CLIs offer, best first, and the read tool each insists on beforehand
# (Claude Code's Write and opencode's write refuse to overwrite a file they have not read).
WRITE_TOOLS = [
    ("Write", "Read"),  # Claude Code
    ("write_file", None),  # Gemini CLI
    ("write", "read"),  # opencode
    ("Create", "Read"),  # droid
    ("apply_patch", None),  # codex (a freeform tool, or a function taking the patch)
]
# A verifier offered no write tool tries the shell instead (droid's read-only mode offers
# only Execute among the tools that could write).
SHELL_TOOLS = ("Execute", "Bash", "bash", "run_shell_command", "shell", "exec_command")
PATH_KEYS = ("file_path", "filePath", "absolute_path", "path")
CONTENT_KEYS = ("content", "contents", "text")
CWD_RES = [  # where each CLI states its working directory
    re.compile(r"<cwd>([^<]+)</cwd>"),  # codex environment_context
    re.compile(r"(?:Primary working directory|Working directory|Current working directory|"
               r"current working directory is)[:\s]+(/\S+)", re.I),
    re.compile(r"working in the directory:?\s+(/\S+)", re.I),  # Gemini CLI
    re.compile(r"% pwd\n(/\S+)"),  # droid
]


def prompt_index(conv: Conversation) -> int:
    """The latest user turn that carries the task (not a tool result)."""
    for i in range(len(conv.turns) - 1, -1, -1):
        t = conv.turns[i]
        text = "\n".join(t.texts)
        if t.role == "user" and any(m in text for m in (BUILDER, VERIFIER, "CONTRACT-")):
            return i
    return -1


def working_dir(conv: Conversation) -> str | None:
    text = conv.all_text()
    for r in CWD_RES:
        m = r.search(text)
        if m:
            return m.group(1).rstrip(".,;'\"`)")
    return None


def pick_write_tool(conv: Conversation) -> tuple[Tool, Tool | None] | None:
    for write, read in WRITE_TOOLS:
        if write in conv.tools:
            return conv.tools[write], conv.tools.get(read) if read else None
    return None


def tool_args(tool: Tool, path: str, content: str | None, cwd: str | None) -> object:
    """Arguments for a write (content given) or read call, from the tool's own schema."""
    full = path if os.path.isabs(path) or not cwd else os.path.join(cwd, path)
    if tool.name == "apply_patch":
        # Add File replaces a file that exists, so this also serves a fix attempt.
        lines = "".join(f"+{line}\n" for line in (content or "").splitlines())
        patch = f"*** Begin Patch\n*** Add File: {path}\n{lines}*** End Patch\n"
        if tool.kind == "custom":
            return patch
        key = next(iter(tool.params), "input")
        return {key: patch}
    args = {next((k for k in PATH_KEYS if k in tool.params), "file_path"): full}
    if content is not None:
        args[next((k for k in CONTENT_KEYS if k in tool.params), "content")] = content
    return args


def write_steps(conv: Conversation, path: str, content: str, since: int,
                read_first: bool = True) -> Reply | None:
    """The next tool call that writes `content` to `path`, or None when the write's result is
    back (or no tool can write). A verifier's write is of a new file: no Read needed."""
    picked = pick_write_tool(conv)
    if not picked:
        return None
    write, read = picked
    done = [c for t in conv.turns[since + 1:] for c in t.calls]
    if write.name in done or len(done) >= 4:
        return None
    cwd = working_dir(conv)
    if read and read_first and read.name not in done:
        return Reply("", calls=[(read.name, tool_args(read, path, None, cwd))],
                     label=f"tool:{read.name}")
    return Reply("", calls=[(write.name, tool_args(write, path, content, cwd))],
                 label=f"tool:{write.name}")


def shown_content(conv: Conversation, path: str) -> str | None:
    """The content of `path` as aider shows a file that is in its chat (the path alone on a
    line, then the file in a fence), the latest showing; None if it shows none."""
    block = re.compile(rf"^{re.escape(path)}\n```[^\n]*\n(.*?)^```", re.M | re.S)
    found = [m.group(1) for t in conv.turns if t.role == "user" for x in t.texts
             for m in block.finditer(x)]
    return found[-1] if found else None


def shell_write(conv: Conversation, path: str, content: str) -> Reply | None:
    """A shell tool call that writes the file, with the tool's other required fields filled:
    droid's Execute wants a summary of 3-8 words, a reason and a self-assessed risk level,
    which gets the first of its enum, "low" (what droid's docs call file creation)."""
    tool = next((conv.tools[n] for n in SHELL_TOOLS if n in conv.tools), None)
    if not tool:
        return None
    args = {k: fill_schema(v) for k, v in tool.params.items() if k in tool.required}
    args.update({k: "Write the verifier file" for k, v in args.items() if v == SIDE_TEXT})
    key = "cmd" if "cmd" in tool.params else "command"
    escaped = content.replace("\n", "\\n")  # printf turns it back into a newline
    args[key] = f"printf '{escaped}' > {path}"
    return Reply("verifier", calls=[(tool.name, args)], label=f"tool:{tool.name}")


def aider_edit(conv: Conversation, path: str, word: str) -> str:
    """An edit in aider's format. A SEARCH/REPLACE block must quote the file's current
    content, and an empty SEARCH appends to a file that exists, so while aider has not shown
    the file, first send a block that cannot match: aider then creates the file if missing
    (empty), adds it to the chat and reports the failed match with the file's content, and
    the next answer replaces that content."""
    if "SEARCH/REPLACE" not in conv.system:  # the whole-file format
        return f"{path}\n```\n{word}\n```\n"
    current = shown_content(conv, path)
    search = "CONTRACT-PROBE: show me this file\n" if current is None else current
    if search and not search.endswith("\n"):
        search += "\n"
    return (f"Editing the file.\n\n{path}\n```\n<<<<<<< SEARCH\n{search}=======\n{word}\n"
            ">>>>>>> REPLACE\n```\n")


def fill_schema(schema: dict) -> object:
    """A value in the shape a side call asked for (Claude Code's title as {"title": ...}):
    an enum's first value, which for Gemini's next-speaker check is "user", i.e. stop."""
    if "enum" in schema:
        return schema["enum"][0]
    typ = str(schema.get("type", "")).lower()  # Gemini writes OBJECT, STRING
    if typ == "object" or "properties" in schema:
        return {k: fill_schema(v) for k, v in (schema.get("properties") or {}).items()}
    return {"boolean": False, "number": 0, "integer": 0, "array": []}.get(typ, SIDE_TEXT)


def decide(conv: Conversation) -> Reply:
    if conv.schema is not None:
        return Reply("side", text=json.dumps(fill_schema(conv.schema)))
    i = prompt_index(conv)
    earlier = "\n".join(x for t in conv.turns[: i + 1] if t.role == "user" for x in t.texts)
    # aider offers no tools; its system prompt (code and ask modes) starts like this. Any
    # other call without tools is a side call (a title, a summary).
    aider = not conv.tools and "Act as an expert" in conv.system
    if (conv.tools or aider) and BUILDER in earlier:
        return builder_reply(conv, i, earlier, aider)
    if (conv.tools or aider) and VERIFIER in earlier:
        return verifier_reply(conv, i, aider)
    return Reply("side", text=SIDE_TEXT)


def builder_reply(conv: Conversation, i: int, earlier: str, aider: bool) -> Reply:
    # The last CONTRACT-WRITE of the latest prompt: a fix attempt's feedback comes after the
    # task. A resumed session's new prompt may carry only the feedback.
    writes = WRITE_RE.findall("\n".join(conv.turns[i].texts)) or WRITE_RE.findall(earlier)
    if not writes:
        return Reply("builder", text="Nothing to write.")
    path, word = writes[-1]
    if aider:
        return Reply("builder", text=aider_edit(conv, path, word), label="aider-edit")
    step = write_steps(conv, path, word + "\n", i)
    if step:
        step.kind = "builder"
        return step
    return Reply("builder", text=f"Wrote {path}.")


def verifier_reply(conv: Conversation, i: int, aider: bool) -> Reply:
    prompt = "\n".join(conv.turns[i].texts)
    verdict = {"approved": True, "issues": []}
    rnd, reject = ROUND_RE.search(prompt), REJECT_RE.search(prompt)
    if reject and rnd and rnd.group(1) == "1":
        verdict = {"approved": False, "issues": [f"CONTRACT-WRITE {reject[1]} {reject[2]}"]}
    text = "Reviewed the change.\n" + json.dumps(verdict)
    target = TRY_WRITE_RE.search(prompt)
    if not target:
        return Reply("verifier", text=text)
    # First try to write, which a read-only mode must refuse.
    if aider:  # ask mode must not apply an edit block
        block = (f"{target[1]}\n```\n<<<<<<< SEARCH\n=======\nverifier was here\n"
                 ">>>>>>> REPLACE\n```\n\n")
        return Reply("verifier", text=block + text, label="aider-edit")
    if not any(t.results for t in conv.turns[i + 1:]):
        step = (write_steps(conv, target[1], "verifier was here\n", i, read_first=False)
                or shell_write(conv, target[1], "verifier was here\n"))
        if step:
            step.kind = "verifier"
            return step
    return Reply("verifier", text=text)


# --- answering, one function per API shape ----------------------------------------------


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def sse(events: list[tuple[str | None, object]]) -> bytes:
    out = []
    for name, data in events:
        if name:
            out.append(f"event: {name}\n")
        out.append("data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n")
    return "".join(out).encode()


def answer_anthropic(reply: Reply, stream: bool, inp: int, outp: int) -> tuple[str, bytes]:
    content = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    for name, args in reply.calls:
        content.append({"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": args})
    stop = "tool_use" if reply.calls else "end_turn"
    usage = {"input_tokens": inp, "output_tokens": outp, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}
    msg = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": MODEL,
           "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}
    if not stream:
        return "application/json", json.dumps(msg).encode()
    start = dict(msg, content=[], stop_reason=None, usage=dict(usage, output_tokens=0))
    ev = [("message_start", {"type": "message_start", "message": start})]
    for idx, block in enumerate(content):
        if block["type"] == "text":
            first = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            first = dict(block, input={})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        ev += [("content_block_start", {"type": "content_block_start", "index": idx,
                                        "content_block": first}),
               ("content_block_delta", {"type": "content_block_delta", "index": idx,
                                        "delta": delta}),
               ("content_block_stop", {"type": "content_block_stop", "index": idx})]
    ev += [("message_delta", {"type": "message_delta",
                              "delta": {"stop_reason": stop, "stop_sequence": None},
                              "usage": {"output_tokens": outp}}),
           ("message_stop", {"type": "message_stop"})]
    return "text/event-stream", sse(ev)


def answer_responses(reply: Reply, stream: bool, inp: int, outp: int) -> tuple[str, bytes]:
    items = []
    if reply.text:
        items.append({"type": "message", "id": new_id("msg_"), "role": "assistant",
                      "status": "completed",
                      "content": [{"type": "output_text", "text": reply.text,
                                   "annotations": []}]})
    for name, args in reply.calls:
        if isinstance(args, str):  # a freeform (custom) tool takes its input as text
            items.append({"type": "custom_tool_call", "id": new_id("ctc_"),
                          "call_id": new_id("call_"), "name": name, "input": args,
                          "status": "completed"})
        else:
            items.append({"type": "function_call", "id": new_id("fc_"),
                          "call_id": new_id("call_"), "name": name,
                          "arguments": json.dumps(args), "status": "completed"})
    usage = {"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": outp, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": inp + outp}
    resp = {"id": new_id("resp_"), "object": "response", "created_at": int(time.time()),
            "status": "completed", "model": MODEL, "output": items, "usage": usage}
    if not stream:
        return "application/json", json.dumps(resp).encode()
    seq = itertools.count()
    ev = [("response.created", {"type": "response.created", "sequence_number": next(seq),
                                "response": dict(resp, status="in_progress", output=[],
                                                 usage=None)})]
    for idx, item in enumerate(items):
        ev.append(("response.output_item.added", {"type": "response.output_item.added",
                                                  "sequence_number": next(seq),
                                                  "output_index": idx, "item": item}))
        if item["type"] == "message":
            ev.append(("response.output_text.delta", {
                "type": "response.output_text.delta", "sequence_number": next(seq),
                "item_id": item["id"], "output_index": idx, "content_index": 0,
                "delta": reply.text}))
        ev.append(("response.output_item.done", {"type": "response.output_item.done",
                                                 "sequence_number": next(seq),
                                                 "output_index": idx, "item": item}))
    ev.append(("response.completed", {"type": "response.completed",
                                      "sequence_number": next(seq), "response": resp}))
    return "text/event-stream", sse(ev)


def answer_chat(reply: Reply, stream: bool, inp: int, outp: int) -> tuple[str, bytes]:
    calls = [{"id": new_id("call_"), "type": "function",
              "function": {"name": name, "arguments": json.dumps(args)}}
             for name, args in reply.calls]
    finish = "tool_calls" if calls else "stop"
    usage = {"prompt_tokens": inp, "completion_tokens": outp, "total_tokens": inp + outp,
             "prompt_tokens_details": {"cached_tokens": 0}}
    base = {"id": new_id("chatcmpl-"), "created": int(time.time()), "model": MODEL}
    message = {"role": "assistant", "content": reply.text or None}
    if calls:
        message["tool_calls"] = calls
    if not stream:
        body = dict(base, object="chat.completion", usage=usage,
                    choices=[{"index": 0, "message": message, "finish_reason": finish}])
        return "application/json", json.dumps(body).encode()
    chunk = dict(base, object="chat.completion.chunk")
    delta = {"role": "assistant", "content": reply.text or ""}
    if calls:
        delta["tool_calls"] = [dict(c, index=n) for n, c in enumerate(calls)]
    # Usage goes in a last chunk with no choices, as OpenAI sends it for include_usage.
    ev = [(None, dict(chunk, choices=[{"index": 0, "delta": delta, "finish_reason": None}])),
          (None, dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": finish}])),
          (None, dict(chunk, choices=[], usage=usage)),
          (None, "[DONE]")]
    return "text/event-stream", sse(ev)


def answer_gemini(reply: Reply, stream: bool, inp: int, outp: int) -> tuple[str, bytes]:
    parts = [{"text": reply.text}] if reply.text else []
    parts += [{"functionCall": {"name": name, "args": args}} for name, args in reply.calls]
    body = {"candidates": [{"content": {"role": "model", "parts": parts},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": inp, "candidatesTokenCount": outp,
                              "totalTokenCount": inp + outp, "cachedContentTokenCount": 0},
            "modelVersion": MODEL, "responseId": new_id("")}
    if not stream:
        return "application/json", json.dumps(body).encode()
    return "text/event-stream", sse([(None, body)])


# --- the HTTP side ----------------------------------------------------------------------


class State:
    def __init__(self, log_path: str, dump_dir: str | None):
        self.lock = threading.Lock()
        self.served = 0
        self.log = open(log_path, "a", encoding="utf-8")
        self.dump_dir = dump_dir

    def next_usage(self) -> tuple[int, int]:
        """Input and output tokens for the next answer: distinct for every answer."""
        with self.lock:
            n = self.served
            self.served += 1
        return 1000 + 10 * n, 50 + n

    def write_log(self, line: dict) -> None:
        with self.lock:
            self.log.write(json.dumps(line) + "\n")
            self.log.flush()


def route(method: str, path: str) -> str:
    """Which API a request speaks, from its path alone."""
    if method != "POST":
        return "other"
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/chat/completions"):
        return "chat"
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return "gemini"
    return "other"


def other_answer(method: str, path: str, body: dict) -> tuple[int, dict]:
    """The small endpoints some CLIs call besides the model: model lists, token counts."""
    if path.endswith("/count_tokens") or path.endswith(":countTokens"):
        return 200, {"input_tokens": 100, "totalTokens": 100}
    if method == "GET" and re.search(r"/models/?$", path):
        return 200, {"object": "list", "data": [{"id": MODEL, "object": "model",
                                                 "type": "model", "created": 0,
                                                 "display_name": MODEL, "owned_by": "test"}],
                     "models": [{"name": f"models/{MODEL}", "slug": MODEL}],
                     "has_more": False, "first_id": MODEL, "last_id": MODEL}
    return 404, {"error": {"type": "not_found", "message": f"no {method} {path} here"}}


ANSWERS = {"anthropic": answer_anthropic, "responses": answer_responses,
           "chat": answer_chat, "gemini": answer_gemini}
PARSERS = {"anthropic": parse_anthropic, "responses": parse_responses, "chat": parse_chat,
           "gemini": parse_gemini}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State  # set on the class by serve()

    def log_message(self, *args) -> None:  # the JSON log is the log
        pass

    def read_body(self) -> dict:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}

    def send(self, status: int, ctype: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        if ctype == "text/event-stream":
            self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(payload)

    def handle_any(self) -> None:
        url = urlsplit(self.path)
        body = self.read_body() if self.command in ("POST", "PUT") else {}
        api = route(self.command, url.path)
        if self.state.dump_dir:  # the raw requests, for learning a CLI's shapes
            name = f"{time.time():.6f}-{self.command}-{re.sub(r'[^A-Za-z0-9]+', '_', url.path)}"
            with open(os.path.join(self.state.dump_dir, name + ".json"), "w") as f:
                json.dump({"headers": dict(self.headers), "query": url.query, "body": body},
                          f, indent=1)
        if api == "other":
            status, answer = other_answer(self.command, url.path, body)
            self.state.write_log(log_line(api, url.path, None, None, 0, 0,
                                          method=self.command, status=status))
            self.send(status, "application/json", json.dumps(answer).encode())
            return
        try:
            conv = PARSERS[api](body, url.path)
            reply = decide(conv)
        except Exception as e:  # a shape this server does not know yet: say so, in the log too
            self.state.write_log(log_line(api, url.path, None, None, 0, 0, error=repr(e)))
            self.send(500, "application/json", json.dumps({"error": {"message": repr(e)}}).encode())
            return
        inp, outp = self.state.next_usage()
        ctype, payload = ANSWERS[api](reply, conv.stream, inp, outp)
        self.state.write_log(log_line(api, url.path, conv, reply, inp, outp))
        self.send(200, ctype, payload)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def log_line(api: str, path: str, conv: Conversation | None, reply: Reply | None,
             inp: int, outp: int, **extra) -> dict:
    """One request: its API, the kind of call, the tools offered, how many assistant turns
    came before (aider's few-shot examples count too), what was answered, the tool results
    the client sent back, and the exact usage sent."""
    turns = conv.turns if conv else []
    return {"api": api, "path": path, "kind": reply.kind if reply else "side",
            "stream": conv.stream if conv else False,
            "tools": sorted(conv.tools) if conv else [],
            "history": sum(t.role == "assistant" for t in turns),
            # Prompts of git-pipeline in the conversation: 2 or more on a resumed session.
            "prompts": sum(t.role == "user" and any(m in "\n".join(t.texts)
                                                    for m in (BUILDER, VERIFIER))
                           for t in turns),
            "reply": reply.label if reply else "text",
            "tool_results": [r[:300] for t in turns for r in t.results],
            "input_tokens": inp, "output_tokens": outp, **extra}


def serve(args) -> None:
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
    Handler.state = State(args.log, args.dump)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.ready + ".tmp"  # written whole, then renamed: a reader never sees half a port
    with open(tmp, "w") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(tmp, args.ready)
    server.serve_forever()


# --- `env`: what each CLI needs to use this server --------------------------------------

# For every CLI, besides HOME and the XDG folders in the test's home: nothing that phones home.
COMMON_ENV = {"DO_NOT_TRACK": "1", "NO_UPDATE_NOTIFIER": "1", "CI": "true"}


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def env_claude(url: str, home: str) -> dict:
    # Onboarding done and the key approved, so no first-run screen can get in the way.
    write(os.path.join(home, ".claude.json"), json.dumps({
        "hasCompletedOnboarding": True, "numStartups": 1, "autoUpdates": False,
        "customApiKeyResponses": {"approved": ["contract-key"], "rejected": []}}))
    # Nonessential traffic stays on: its title side call shows in modelUsage and
    # total_cost_usd but not in usage, and the suite checks that all of it is counted.
    return {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "contract-key",
            "ANTHROPIC_MODEL": "claude-sonnet-4-5",
            "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"}


def env_codex(url: str, home: str) -> dict:
    codex_home = os.path.join(home, ".codex")
    write(os.path.join(codex_home, "config.toml"), f"""\
# The scripted model server as the model provider. gpt-5.5 is a model codex knows, so it
# offers its apply_patch tool (an unknown model gets only exec_command).
model = "gpt-5.5"
model_provider = "contract"
check_for_update_on_startup = false

[model_providers.contract]
name = "contract"
base_url = "{url}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false
""")
    # codex will not put its helper binaries (the codex-linux-sandbox alias that bwrap runs)
    # in a CODEX_HOME under the temp folder: with bwrap on PATH every sandboxed write then
    # fails ("bwrap: execvp codex-linux-sandbox"). A temp folder of its own avoids that.
    tmp = os.path.join(home, "tmp")
    os.makedirs(tmp, exist_ok=True)
    return {"CODEX_HOME": codex_home, "OPENAI_API_KEY": "contract-key", "TMPDIR": tmp}


def env_gemini(url: str, home: str) -> dict:
    # Without selectedType: "Invalid auth method selected." (exit 41).
    write(os.path.join(home, ".gemini", "settings.json"), json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "telemetry": {"enabled": False}}, indent=1))
    # Not GEMINI_CLI_TRUST_WORKSPACE: the preset's --skip-trust must be what trusts the
    # folder (without either, a headless run ends with exit 55).
    return {"GEMINI_API_KEY": "contract-key", "GOOGLE_GEMINI_BASE_URL": url,
            "GEMINI_MODEL": "gemini-2.5-pro"}


def env_opencode(url: str, home: str) -> dict:
    # A cost per million tokens, so that step_finish cost is a number a test can check.
    model = {"name": MODEL, "tool_call": True, "cost": {"input": 3, "output": 15},
             "limit": {"context": 200000, "output": 32000}}
    write(os.path.join(home, ".config", "opencode", "opencode.json"), json.dumps({
        "$schema": "https://opencode.ai/config.json", "autoupdate": False, "share": "disabled",
        "model": f"contract/{MODEL}", "small_model": f"contract/{MODEL}",
        "provider": {"contract": {"npm": "@ai-sdk/openai-compatible", "name": "contract",
                                  "options": {"baseURL": url + "/v1", "apiKey": "contract-key"},
                                  "models": {MODEL: model}}}}, indent=1))
    return {"OPENCODE_DISABLE_AUTOUPDATE": "true", "OPENCODE_DISABLE_SHARE": "true",
            "OPENCODE_DISABLE_MODELS_FETCH": "true", "OPENCODE_DISABLE_LSP_DOWNLOAD": "true"}


def env_aider(url: str, home: str) -> dict:
    # aider downloads a price list unless its cache is fresh and not empty (and prints the
    # failure on stdout): a fresh cache without our model makes it use litellm's bundled one.
    write(os.path.join(home, ".aider", "caches", "model_prices_and_context_window.json"),
          json.dumps({"contract-placeholder": {}}))
    # A model aider knows, so it picks its diff edit format and has a price.
    return {"OPENAI_API_KEY": "contract-key", "OPENAI_API_BASE": url + "/v1",
            "AIDER_MODEL": "openai/gpt-4o", "AIDER_WEAK_MODEL": "openai/gpt-4o-mini",
            "AIDER_ANALYTICS_DISABLE": "true", "AIDER_CHECK_UPDATE": "false",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def env_droid(url: str, home: str) -> dict:
    # A BYOK model as the session default; any FACTORY_API_KEY passes the login check.
    write(os.path.join(home, ".factory", "settings.json"), json.dumps({
        "customModels": [{"model": MODEL, "displayName": "contract", "baseUrl": url + "/v1",
                          "apiKey": "contract-key", "provider": "generic-chat-completion-api",
                          "maxOutputTokens": 4096}],
        "sessionDefaultSettings": {"model": f"custom:{MODEL}"}}, indent=1))
    # Airgap mode: no telemetry, feature flag or org settings requests.
    return {"FACTORY_API_KEY": "contract-key", "FACTORY_AIRGAP_ENABLED": "true",
            "FACTORY_DROID_AUTO_UPDATE_ENABLED": "false"}


ENVS = {"claude": env_claude, "codex": env_codex, "gemini": env_gemini,
        "opencode": env_opencode, "aider": env_aider, "droid": env_droid}


def env(args) -> None:
    home = os.path.abspath(args.home)
    os.makedirs(home, exist_ok=True)
    url = args.url.rstrip("/")
    out = {"HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
           "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
           "XDG_CACHE_HOME": os.path.join(home, ".cache"),
           "XDG_STATE_HOME": os.path.join(home, ".local", "state"), **COMMON_ENV}
    out.update(ENVS[args.cli](url, home))
    for k, v in out.items():
        print(f"{k}={v}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the server until killed")
    s.add_argument("--log", required=True, help="append one JSON line per request")
    s.add_argument("--ready", required=True, help="gets the port once listening")
    s.add_argument("--dump", help="also save each raw request in this folder")
    e = sub.add_parser("env", help="write a CLI's config into HOME, print its env vars")
    e.add_argument("--cli", required=True, choices=sorted(ENVS))
    e.add_argument("--url", required=True)
    e.add_argument("--home", required=True)
    args = p.parse_args()
    serve(args) if args.cmd == "serve" else env(args)


if __name__ == "__main__":
    sys.exit(main())
