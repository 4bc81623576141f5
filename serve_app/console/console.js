// The console: sign-in, hash routing and the views (#/inbox, #/runs, #/runs/<id>, #/agents, #/tasks).
import { api, ApiError, Live, resume, session, signIn, signOut, stream, V1 } from './api.js';
import { badge, clear, countdown, facts, h, json, markdown, schemaFields, shortId, when } from './dom.js';

const $ = (id) => document.getElementById(id);
const view = () => $('view');
const FINISHED = new Set(['completed', 'failed', 'cancelled', 'timeout']);
const TASK_STATUSES = ['pending', 'awaiting_approval', 'assigned', 'in_progress', 'completed', 'failed', 'cancelled'];
const RUN_STATUSES = ['pending', 'running', 'waiting', 'completed', 'failed', 'cancelled', 'timeout'];
const AGENT_STATUSES = ['draft', 'deploying', 'active', 'inactive', 'error'];

let current = { cleanup: () => {}, onEvent: () => {}, onLive: () => {} };
let live = null;

// ---- messages -------------------------------------------------------------------------------------

/** An API error (its message, field details and correlation id) or any other error, in `where`. */
function errorBox(error) {
  const box = h('div', { class: 'error' });
  box.append(h('strong', null, error instanceof ApiError ? `${error.message}` : String(error?.message || error)));
  if (error instanceof ApiError) {
    if (error.details.length) {
      box.append(h('ul', null, error.details.map((d) => h('li', null, `${d.field}: ${d.message}`))));
    }
    if (error.correlationId) box.append(h('small', { class: 'cid' }, `correlation id ${error.correlationId}`));
  }
  return box;
}

function showError(error) {
  const box = errorBox(error);
  box.append(h('button', { type: 'button', class: 'link', onclick: () => box.remove() }, 'Dismiss'));
  $('errors').append(box);
}

function announce(text) {
  $('status').textContent = text;
}

/** Run an action from a button: disabled while it runs, errors shown. */
async function act(button, action) {
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// ---- session ---------------------------------------------------------------------------------------

function showSignedIn(user) {
  $('login').hidden = true;
  $('nav').hidden = false;
  $('signout').hidden = false;
  $('who').textContent = user?.email || '';
  live = new Live(['approvals', 'executions', 'agents', 'tasks'], {
    onEvent: (message) => current.onEvent(message),
    onState: (state) => {
      $('live').dataset.state = state;
      $('live').textContent = state === 'live' ? 'live' : state === 'connecting' ? 'connecting…' : 'offline';
      current.onLive(state);
    },
    onReconnect: () => current.onLive('reconnected'),
  });
  live.start();
  route();
}

function showSignedOut() {
  if (live) live.stop();
  live = null;
  current.cleanup();
  current = { cleanup: () => {}, onEvent: () => {}, onLive: () => {} };
  clear(view());
  $('nav').hidden = true;
  $('signout').hidden = true;
  $('who').textContent = '';
  $('login').hidden = false;
  $('login-email').focus();
}

session.onSignedOut = showSignedOut;

$('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = event.submitter;
  const user = await act(button, () => signIn($('login-email').value, $('login-password').value));
  if (user) {
    $('login-password').value = '';
    showSignedIn(user);
  }
});

$('signout').addEventListener('click', async () => {
  await act($('signout'), () => signOut());
  showSignedOut();
});

// ---- routing ---------------------------------------------------------------------------------------

function route() {
  if (!session.user) return;
  const hash = location.hash || '#/inbox';
  const [, section = 'inbox', id] = hash.split('/');
  current.cleanup();
  current = { cleanup: () => {}, onEvent: () => {}, onLive: () => {} };
  clear(view());
  for (const link of $('nav').querySelectorAll('a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const views = { inbox: inboxView, runs: id ? () => runView(decodeURIComponent(id)) : runsView, agents: agentsView, tasks: tasksView };
  (views[section] || inboxView)();
}

window.addEventListener('hashchange', route);

/** Set the view's handlers; returns a function to register cleanups. */
function mount(handlers) {
  const cleanups = [];
  current = {
    cleanup: () => cleanups.splice(0).forEach((fn) => fn()),
    onEvent: handlers.onEvent || (() => {}),
    onLive: handlers.onLive || (() => {}),
  };
  return (fn) => cleanups.push(fn);
}

// ---- inbox -----------------------------------------------------------------------------------------

function inboxView() {
  const list = h('div', { class: 'cards', id: 'inbox' });
  const empty = h('p', { class: 'empty', hidden: true }, 'Nothing waits for a decision.');
  view().append(h('h1', null, 'Approvals waiting'), empty, list);
  const cards = new Map();

  async function load() {
    let page;
    try {
      page = await api(`${V1}/approvals/pending`, { query: { sort_by: 'expires_at', limit: 100 } });
    } catch (error) {
      showError(error);
      return;
    }
    const seen = new Set();
    for (const approval of page.approvals) {
      seen.add(approval.id);
      if (!cards.has(approval.id)) {
        const card = approvalCard(approval, () => drop(approval.id));
        cards.set(approval.id, card);
      }
    }
    for (const id of [...cards.keys()]) if (!seen.has(id) && !cards.get(id).dataset.held) drop(id);
    // Keep the list in the API's order (soonest to expire first).
    list.replaceChildren(...page.approvals.map((a) => cards.get(a.id)), 
      ...[...cards.values()].filter((c) => c.dataset.held && !seen.has(c.dataset.approvalId)));
    empty.hidden = cards.size > 0;
  }

  function drop(id) {
    const card = cards.get(id);
    if (card) card.remove();
    cards.delete(id);
    empty.hidden = cards.size > 0;
  }

  const reload = debounce(load, 25);  // a burst of requests is one fetch
  const tick = setInterval(() => {
    for (const el of list.querySelectorAll('[data-expires]')) {
      const text = countdown(el.dataset.expires);
      if (el.textContent !== text) el.textContent = text;
      el.classList.toggle('expired', text === 'expired');
    }
  }, 1000);
  // While the live connection is down, look every 5 s; once it is up, events drive the list.
  let poll = null;
  const polling = (on) => {
    if (on && !poll) poll = setInterval(load, 5000);
    if (!on && poll) { clearInterval(poll); poll = null; }
  };
  const onCleanup = mount({
    onEvent(message) {
      if (message.type === 'approval.requested') reload();
      else if (/^approval\.(approved|rejected|expired)$/.test(message.type)) {
        const id = message.data?.approval_id || message.data?.id;
        const card = id && cards.get(id);
        if (card && !card.dataset.held) {
          drop(id);
          const who = message.data?.decided_by ? ` by ${message.data.decided_by}` : '';
          announce(`Approval ${message.type.split('.')[1]}${who}.`);
        }
      }
    },
    onLive(state) {
      polling(state !== 'live');
      if (state === 'reconnected') reload();
    },
  });
  polling($('live').dataset.state !== 'live');
  onCleanup(() => { clearInterval(tick); polling(false); });
  load();
}

function approvalCard(approval, done) {
  const card = h('article', { class: 'card approval', dataset: { approvalId: approval.id }, 'aria-label': approval.reason || 'Approval' });
  const gates = [];
  if (approval.execution_id) {
    gates.push(h('a', { href: `#/runs/${encodeURIComponent(approval.execution_id)}` }, `run ${shortId(approval.execution_id)}`));
    if (approval.node_id) gates.push(`, node ${approval.node_id}`);
  } else if (approval.task_id) {
    gates.push(h('a', { href: '#/tasks' }, `task ${shortId(approval.task_id)}`));
  } else {
    gates.push('a decision');
  }
  const left = h('span', { class: 'countdown', dataset: { expires: approval.expires_at } }, countdown(approval.expires_at));
  card.append(
    h('h2', null, approval.reason || 'Approval requested'),
    facts([
      ['Gates', h('span', null, gates)],
      ['Agent', approval.agent_id ? shortId(approval.agent_id) : ''],
      ['Requested by', approval.requested_by === session.user?.id ? 'you' : approval.requested_by],
      ['Priority', badge(approval.priority)],
      ['Expires', h('span', null, left, ` (${when(approval.expires_at)})`)],
    ]),
  );
  const context = approval.context;
  if (context?.description) card.append(h('section', { class: 'context' }, markdown(context.description)));
  if (context && context.preview !== null && context.preview !== undefined) {
    card.append(h('details', { class: 'preview', open: true },
      h('summary', null, context.truncated ? 'Preview (truncated)' : 'Preview'), json(context.preview)));
  }
  const message = h('div', { class: 'card-message', role: 'alert' });

  const schema = approval.input_schema;
  const form = schema ? schemaFields(schema) : null;
  const approveButton = h('button', { type: 'submit', class: 'approve' }, 'Approve');
  const approveForm = h('form', { class: 'decide' }, form ? form.fields : null, approveButton);
  const reasonId = `reason-${approval.id}`;
  const reason = h('input', { id: reasonId, name: 'reason', type: 'text', maxlength: 2000, required: true });
  const rejectButton = h('button', { type: 'submit', class: 'reject' }, 'Reject');
  const rejectForm = h('form', { class: 'decide reject-form' },
    h('label', { for: reasonId }, 'Reason for rejecting'), h('div', { class: 'inline' }, reason, rejectButton));

  async function decide(button, request, verb) {
    message.replaceChildren();
    approveButton.disabled = rejectButton.disabled = true;
    card.dataset.held = '1';  // an event must not remove it while the answer is on its way
    try {
      await request();
      announce(`${verb}: ${approval.reason || approval.id}`);
      delete card.dataset.held;
      done();
    } catch (error) {
      message.append(errorBox(error));
      if (error instanceof ApiError && error.status === 409) {
        // Someone else decided first: say who, and let the person clear the card.
        approveForm.hidden = rejectForm.hidden = true;
        message.append(h('button', { type: 'button', onclick: () => { delete card.dataset.held; done(); } }, 'Dismiss'));
      } else {
        approveButton.disabled = rejectButton.disabled = false;
        delete card.dataset.held;
      }
    }
  }

  approveForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const body = form ? { input: form.read() } : {};
    decide(approveButton, () => api(`${V1}/approvals/${encodeURIComponent(approval.id)}/approve`, { method: 'POST', body }), 'Approved');
  });
  rejectForm.addEventListener('submit', (event) => {
    event.preventDefault();
    decide(rejectButton, () => api(`${V1}/approvals/${encodeURIComponent(approval.id)}/reject`,
      { method: 'POST', query: { reason: reason.value } }), 'Rejected');
  });
  card.append(message, approveForm, rejectForm);
  return card;
}

// ---- runs ------------------------------------------------------------------------------------------

function select(id, label, options, value = '') {
  const el = h('select', { id, name: id }, h('option', { value: '' }, 'any'), options.map((o) => h('option', { value: o, selected: o === value }, o)));
  return [h('label', { for: id }, label), el];
}

function runsView() {
  const [statusLabel, status] = select('run-status', 'Status', RUN_STATUSES);
  const agent = h('input', { id: 'run-agent', name: 'agent_id', type: 'text' });
  const workflow = h('input', { id: 'run-workflow', name: 'workflow_id', type: 'text' });
  const filters = h('form', { class: 'filters' },
    h('div', { class: 'field' }, statusLabel, status),
    h('div', { class: 'field' }, h('label', { for: 'run-agent' }, 'Agent id'), agent),
    h('div', { class: 'field' }, h('label', { for: 'run-workflow' }, 'Workflow id'), workflow),
    h('button', { type: 'submit' }, 'Filter'));
  const rows = h('tbody');
  const table = h('div', { class: 'scroll' }, h('table', null,
    h('thead', null, h('tr', null, ['Run', 'Status', 'Workflow', 'Progress', 'Started'].map((t) => h('th', { scope: 'col' }, t)))), rows));

  const startWorkflow = h('input', { id: 'start-workflow', name: 'workflow', type: 'text', required: true });
  const startInput = h('textarea', { id: 'start-input', name: 'input', rows: 4 }, '{}');
  const startButton = h('button', { type: 'submit' }, 'Start run');
  const start = h('form', { class: 'panel start' },
    h('h2', null, 'Start a workflow'),
    h('label', { for: 'start-workflow' }, 'Workflow id'), startWorkflow,
    h('label', { for: 'start-input' }, 'Input (JSON)'), startInput, startButton);
  start.addEventListener('submit', async (event) => {
    event.preventDefault();
    const started = await act(startButton, async () => {
      let input;
      try { input = JSON.parse(startInput.value || '{}'); } catch (error) { throw new Error(`The input is not JSON: ${error.message}`); }
      return api(`${V1}/workflows/${encodeURIComponent(startWorkflow.value.trim())}/execute`, { method: 'POST', body: { input_data: input } });
    });
    if (started) location.hash = `#/runs/${encodeURIComponent(started.execution_id)}`;
  });

  view().append(h('h1', null, 'Runs'), filters, table, start);

  async function load() {
    try {
      const page = await api(`${V1}/executions`, { query: { status: status.value, agent_id: agent.value.trim(), workflow_id: workflow.value.trim(), limit: 50 } });
      rows.replaceChildren(...page.executions.map((run) => h('tr', null,
        h('td', null, h('a', { href: `#/runs/${encodeURIComponent(run.id)}` }, shortId(run.id))),
        h('td', null, badge(run.status)),
        h('td', null, run.workflow_id ? `${shortId(run.workflow_id)} v${run.workflow_version}` : ''),
        h('td', null, `${Math.round((run.progress || 0) * (run.progress > 1 ? 1 : 100))}%`),
        h('td', null, when(run.started_at || run.created_at)))));
      if (!page.executions.length) rows.append(h('tr', null, h('td', { colspan: 5, class: 'empty' }, 'No runs.')));
    } catch (error) {
      showError(error);
    }
  }
  filters.addEventListener('submit', (event) => { event.preventDefault(); load(); });
  const reload = debounce(load, 300);
  mount({ onEvent: (m) => { if (m.type.startsWith('execution.')) reload(); }, onLive: (s) => { if (s === 'reconnected') reload(); } });
  load();
}

function percent(progress) {
  const value = Number(progress) || 0;
  return value > 1 ? value : value * 100;
}

function runView(id) {
  const controller = new AbortController();
  const onCleanup = mount({});
  onCleanup(() => controller.abort());

  const title = h('h1', null, `Run ${shortId(id)} `);
  const statusSlot = h('span', { id: 'run-status' });
  title.append(statusSlot);
  const progress = h('progress', { max: 100, value: 0, id: 'run-progress', 'aria-label': 'Progress' });
  const summary = h('div', { class: 'summary' });
  const cancel = h('button', { type: 'button', class: 'danger', hidden: true }, 'Cancel run');
  const nodes = h('ol', { class: 'nodes', id: 'run-nodes' });
  const timeline = h('ol', { class: 'timeline', id: 'run-timeline' });
  const logs = h('ol', { class: 'logs', id: 'run-logs' });
  const result = h('div', { class: 'result' });
  view().append(
    h('p', null, h('a', { href: '#/runs' }, '← All runs')),
    title, progress, cancel, summary,
    h('h2', null, 'Nodes'), nodes,
    h('h2', null, 'Timeline'), timeline,
    h('h2', null, 'Logs'), logs,
    result,
  );

  const stepState = new Map();  // node id -> latest step status
  let graph = null;
  let run = null;

  function drawNodes() {
    const order = graph ? graph.map((node) => [node.id, node.type]) : [];
    for (const [nodeId, info] of stepState) if (!order.some(([n]) => n === nodeId)) order.push([nodeId, info.type]);
    nodes.replaceChildren(...order.map(([nodeId, type]) => {
      let state = stepState.get(nodeId)?.status || 'not started';
      if (run && run.status === 'waiting' && run.current_step === nodeId) state = 'waiting';
      return h('li', { dataset: { node: nodeId } }, h('code', null, nodeId), ` ${type || ''} `, badge(state));
    }));
    if (!order.length) nodes.append(h('li', { class: 'empty' }, 'No steps yet.'));
  }

  function drawStatus(view) {
    statusSlot.replaceChildren(badge(view.status));
    progress.value = percent(view.progress);
    progress.textContent = `${Math.round(percent(view.progress))}%`;
    cancel.hidden = FINISHED.has(view.status);
  }

  function drawRun() {
    drawStatus(run);
    const waiting = run.waiting_on;
    summary.replaceChildren(facts([
      ['Workflow', run.workflow_id ? `${run.workflow_id} (v${run.workflow_version})` : ''],
      ['Agent', run.agent_id],
      ['Trigger', run.trigger],
      ['Current step', run.current_step],
      ['Waiting on', waiting ? (waiting.kind === 'approval'
        ? h('a', { href: '#/inbox' }, `approval ${shortId(waiting.id)}`) : `${waiting.kind} ${shortId(waiting.id)}`) : ''],
      ['Started', when(run.started_at || run.created_at)],
      ['Duration', run.duration !== null && run.duration !== undefined ? `${run.duration} ms` : ''],
      ['Tokens', String(run.tokens_used ?? 0)],
      ['Cost', `$${Number(run.cost || 0).toFixed(4)}`],
      ['Correlation id', run.correlation_id],
    ]));
    result.replaceChildren(...[
      run.error ? h('section', null, h('h2', null, 'Error'), h('pre', { class: 'run-error' }, run.error)) : null,
      run.output ? h('section', null, h('h2', null, 'Output'), json(run.output)) : null,
    ].filter(Boolean));
    drawNodes();
  }

  async function load() {
    try {
      run = await api(`${V1}/executions/${encodeURIComponent(id)}`, { signal: controller.signal });
    } catch (error) {
      if (!controller.signal.aborted) showError(error);
      return false;
    }
    if (graph === null && run.workflow_id) {
      try {
        const workflow = await api(`${V1}/workflows/${encodeURIComponent(run.workflow_id)}`, { signal: controller.signal });
        graph = workflow.workflow_data?.nodes || [];
      } catch { graph = []; }  // the graph is extra: the steps are enough
    }
    drawRun();
    return true;
  }

  cancel.addEventListener('click', () => act(cancel, async () => {
    await api(`${V1}/executions/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    announce('Run cancelled.');
    await load();
  }));

  function line(text, kind) {
    timeline.append(h('li', { class: kind }, h('time', null, new Date().toLocaleTimeString()), ' ', text));
  }

  const refresh = debounce(load, 200);
  (async () => {
    if (!(await load())) return;
    try {
      await stream(`${V1}/executions/${encodeURIComponent(id)}/stream`, (event, data) => {
        if (event === 'step') {
          stepState.set(data.node_id, { status: data.status, type: data.node_type });
          line(`${data.node_id} (${data.node_type}) ${data.status}${data.error ? `: ${data.error}` : ''}`, 'step');
          drawNodes();
        } else if (event === 'log') {
          logs.append(h('li', { class: `log l-${data.level}` }, h('time', null, when(data.timestamp)), ` ${String(data.level).toUpperCase()} `,
            data.node_id ? h('code', null, data.node_id) : null, ' ', data.message));
        } else if (event === 'execution_output') {
          line(`${data.node_id || 'output'}: ${typeof data.output === 'string' ? data.output : JSON.stringify(data.output)}`, 'output');
        } else if (event === 'status') {
          if (run) Object.assign(run, { status: data.status, progress: data.progress, current_step: data.current_step, error: data.error });
          line(`status ${data.status}${data.current_step ? ` at ${data.current_step}` : ''}`, 'status');
          drawStatus(data);
          refresh();
        } else if (event === 'end') {
          line(`ended ${data.status}`, 'end');
          refresh();
        }
      }, controller.signal);
    } catch (error) {
      if (!controller.signal.aborted) showError(error);
    }
  })();
}

// ---- agents ----------------------------------------------------------------------------------------

function agentsView() {
  const [statusLabel, status] = select('agent-status', 'Status', AGENT_STATUSES);
  const filters = h('form', { class: 'filters' }, h('div', { class: 'field' }, statusLabel, status), h('button', { type: 'submit' }, 'Filter'));
  const list = h('div', { class: 'cards', id: 'agents' });
  view().append(h('h1', null, 'Agents'), filters, list);

  function agentCard(agent) {
    const detail = h('div', { class: 'detail' });
    const deployed = agent.status === 'active' || agent.status === 'deploying';
    const deploy = h('button', { type: 'button' }, deployed ? 'Undeploy' : 'Deploy');
    deploy.addEventListener('click', () => act(deploy, async () => {
      const updated = await api(`${V1}/agents/${encodeURIComponent(agent.id)}/${deployed ? 'undeploy' : 'deploy'}`, { method: 'POST' });
      announce(`${agent.name}: ${updated?.status || 'done'}`);
      await load();
    }));
    const health = h('button', { type: 'button' }, 'Health');
    health.addEventListener('click', () => act(health, async () => {
      const container = await api(`${V1}/agents/${encodeURIComponent(agent.id)}/container`);
      detail.replaceChildren(h('h3', null, 'Health'), json(container));
    }));
    const tasks = h('button', { type: 'button' }, 'Recent tasks');
    tasks.addEventListener('click', () => act(tasks, async () => {
      const page = await api(`${V1}/agents/${encodeURIComponent(agent.id)}/tasks`, { query: { limit: 20 } });
      detail.replaceChildren(h('h3', null, 'Tasks'), page.tasks.length
        ? h('ul', null, page.tasks.map((task) => h('li', null, badge(task.status), ' ', task.title)))
        : h('p', { class: 'empty' }, 'No tasks.'));
    }));
    return h('article', { class: 'card agent', dataset: { agentId: agent.id } },
      h('h2', null, agent.name, ' ', badge(agent.status)),
      facts([
        ['Framework', agent.framework], ['Mode', agent.mode], ['Type', agent.type],
        ['Enabled', agent.is_active === false ? `no${agent.disabled_reason ? ` (${agent.disabled_reason})` : ''}` : 'yes'],
        ['Tasks', `${agent.current_tasks ?? 0} / ${agent.max_concurrent_tasks ?? '?'}`],
        ['Online', agent.online === undefined || agent.online === null ? '' : agent.online ? 'yes' : 'no'],
        ['Note', agent.status_message],
      ]),
      agent.description ? h('p', null, agent.description) : null,
      h('div', { class: 'actions' }, deploy, health, tasks),
      detail);
  }

  async function load() {
    try {
      const page = await api(`${V1}/agents`, { query: { status: status.value, limit: 100 } });
      list.replaceChildren(...page.agents.map(agentCard));
      if (!page.agents.length) list.append(h('p', { class: 'empty' }, 'No agents.'));
    } catch (error) {
      showError(error);
    }
  }
  filters.addEventListener('submit', (event) => { event.preventDefault(); load(); });
  const reload = debounce(load, 300);
  mount({ onEvent: (m) => { if (m.type.startsWith('agent.')) reload(); }, onLive: (s) => { if (s === 'reconnected') reload(); } });
  load();
}

// ---- tasks -----------------------------------------------------------------------------------------

function tasksView() {
  const [statusLabel, status] = select('task-status', 'Status', TASK_STATUSES);
  const filters = h('form', { class: 'filters' }, h('div', { class: 'field' }, statusLabel, status), h('button', { type: 'submit' }, 'Filter'));
  const queue = h('div', { class: 'queue', id: 'queue' });
  const board = h('div', { class: 'board', id: 'board' });
  view().append(h('h1', null, 'Tasks'), filters, h('h2', null, 'Queue'), queue, h('h2', null, 'Board'), board);

  function flat(object, prefix = '') {
    const pairs = [];
    for (const [key, value] of Object.entries(object || {})) {
      if (value && typeof value === 'object' && !Array.isArray(value)) pairs.push(...flat(value, `${prefix}${key} · `));
      else pairs.push([`${prefix}${key}`, Array.isArray(value) ? JSON.stringify(value) : String(value)]);
    }
    return pairs;
  }

  async function load() {
    try {
      const [page, stats] = await Promise.all([
        api(`${V1}/tasks`, { query: { status: status.value, limit: 100 } }),
        api('/stats').catch(() => null),
      ]);
      const columns = status.value ? [status.value] : TASK_STATUSES;
      board.replaceChildren(...columns.map((column) => {
        const items = page.tasks.filter((task) => task.status === column);
        return h('section', { class: 'column', dataset: { status: column }, 'aria-label': column },
          h('h3', null, column.replace('_', ' '), ' ', h('span', { class: 'count' }, String(items.length))),
          h('ul', null, items.map((task) => h('li', { class: 'task', dataset: { taskId: task.id } },
            h('span', { class: 'title' }, task.title), ' ', badge(task.priority),
            h('small', null, ` ${task.type}${task.assigned_agent || task.agent_id ? ` · agent ${shortId(task.assigned_agent || task.agent_id)}` : ''}`)))));
      }));
      queue.replaceChildren(stats ? facts(flat(stats.queue)) : h('p', { class: 'empty' }, 'Queue figures unavailable.'));
    } catch (error) {
      showError(error);
    }
  }
  filters.addEventListener('submit', (event) => { event.preventDefault(); load(); });
  const reload = debounce(load, 300);
  mount({ onEvent: (m) => { if (m.type.startsWith('task.')) reload(); }, onLive: (s) => { if (s === 'reconnected') reload(); } });
  load();
}

// ---- start -----------------------------------------------------------------------------------------

(async () => {
  let user = null;
  try { user = await resume(); } catch { user = null; }
  if (user) showSignedIn(user); else showSignedOut();
})();
