// Starts telegram-test-api 4.2.1 on 127.0.0.1 with the fixes python-telegram-bot 22 needs.
//
// Usage: node server.js PORT [STORE_TIMEOUT_S]. Prints "listening PORT" once it accepts requests;
// stops on SIGTERM/SIGINT. The four gaps closed here (each breaks PTB 22 otherwise):
//   1. getMe lacks is_bot                -> our own getMe route with a full bot user;
//   2. sendMessage results carry ms dates -> divided by 1000;
//   3. callback queries lack chat_instance -> added in TelegramServer.formatUpdate;
//   4. edit/answer/delete answer null     -> true, as Telegram does.
//   5. getUpdates never redelivers    -> Telegram's offset semantics: an update handed out stays
//      pending, and comes again, until a getUpdates whose offset is above its id confirms it.
//      (The stock emulator forgets an update once handed out, so a bot killed between a
//      delivery and its own commit would lose it here and not with Telegram.)
// One test hook: a token starting with "rejected" gets HTTP 401, as Telegram answers a revoked
// token, so the daemon's "token rejected" path can be exercised.
//
// Files (the emulator has none): a test registers bytes with POST /putFile?token=T&fileId=F
// (raw body); getFile then answers {file_id, file_unique_id, file_size, file_path} for them, and
// GET /file/bot<token>/<file_path> serves the bytes, as Telegram does. POST /fileRequests
// {token} lists the getFile and download requests a bot made (to check what was fetched).
//
// Media the bot sends (sendVoice, sendPhoto; the emulator has neither): the multipart body is
// kept as it came, and POST /mediaSent {token} lists {method, chat_id, caption, body (base64)}.
//
// Webhooks: setWebhook/deleteWebhook answer true and are recorded; POST /webhookCalls {token}
// lists them ({method, params}, params as the bot sent them). While a webhook is set, a user's
// message is POSTed to its url with X-Telegram-Bot-Api-Secret-Token when a secret_token was
// given, as Telegram does (the stock emulator sends no header).
'use strict';
const TelegramServer = require('telegram-test-api');

const port = Number(process.argv[2] || 9000);
const storeTimeout = Number(process.argv[3] || 600);
const BOT_USER = {
  id: 666, is_bot: true, first_name: 'Familiar', username: 'FamiliarTestBot',
  can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false,
};

// 3: every update the bot fetches is built by this static method.
const formatUpdate = TelegramServer.formatUpdate;
TelegramServer.formatUpdate = (update) => {
  const out = formatUpdate(update);
  if (out.callback_query && !out.callback_query.chat_instance) {
    const chat = out.callback_query.message && out.callback_query.message.chat;
    out.callback_query.chat_instance = String(chat ? chat.id : 0);
  }
  return out;
};

// Webhook delivery with the secret header (the stock addUserUpdate posts without it).
const axios = require('axios');
TelegramServer.prototype.addUserUpdate = async function addUserUpdate(update) {
  if (!update.botToken) throw new Error('The message must contain a `botToken` field.');
  const webhook = this.webhooks[update.botToken];
  if (webhook) {
    const headers = webhook.secret_token ? { 'X-Telegram-Bot-Api-Secret-Token': webhook.secret_token } : {};
    // The client routes do not await this: a failed delivery must not become an unhandled
    // rejection (which ends node); it is logged, and the update is gone as with a dead webhook.
    try {
      await axios({ url: webhook.url, method: 'POST', data: TelegramServer.formatUpdate(update), headers });
    } catch (err) {
      process.stderr.write(`webhook delivery to ${webhook.url} failed: ${err.message}\n`);
    }
  } else {
    this.storage.userMessages.push(update);
  }
  this.updateId++;
};

function fixDates(value) {
  // 2: the emulator stamps bot messages with Date.now() (milliseconds).
  if (value && typeof value === 'object') {
    if (typeof value.date === 'number' && value.date > 1e11) value.date = Math.floor(value.date / 1000);
    for (const key of Object.keys(value)) if (typeof value[key] === 'object') fixDates(value[key]);
  }
  return value;
}

function fixResult(data) {
  if (data && typeof data === 'object' && 'ok' in data) {
    if (data.ok && data.result === null) data.result = true; // 4
    fixDates(data.result);
  }
  return data;
}

const express = require('express');

const files = new Map(); // `${token}\n${fileId}` -> {data, path}
const fileRequests = new Map(); // token -> [{kind, fileId|path}]
function logFileRequest(token, entry) {
  if (!fileRequests.has(token)) fileRequests.set(token, []);
  fileRequests.get(token).push(entry);
}

const server = new TelegramServer({ port, host: '127.0.0.1', storage: 'RAM', storeTimeout });
const app = server.webServer;
const before = app._router.stack.length;

app.use('/bot:token', (req, res, next) => {
  if (req.params.token.startsWith('rejected')) {
    res.status(401).json({ ok: false, error_code: 401, description: 'Unauthorized' });
    return;
  }
  const sendResult = res.sendResult;
  res.sendResult = (value) => {
    if (value && typeof value.then === 'function') return sendResult(value.then(fixResult));
    return sendResult(fixResult(value));
  };
  next();
});
app.all('/bot:token/getUpdates', (req, res) => { // 5
  const token = req.params.token;
  const params = Object.assign({}, req.query, req.body || {});
  const offset = params.offset === undefined ? null : Number(params.offset);
  const result = [];
  for (const update of server.storage.userMessages) {
    if (update.botToken !== token || update.confirmed) continue;
    if (offset !== null && update.updateId < offset) {
      update.confirmed = true;
      continue;
    }
    update.isRead = true;
    result.push(TelegramServer.formatUpdate(update));
  }
  res.sendResult({ ok: true, result });
});
app.all('/bot:token/getMe', (_req, res) => res.json({ ok: true, result: BOT_USER })); // 1
app.all('/bot:token/sendChatAction', (_req, res) => res.json({ ok: true, result: true }));
app.all('/bot:token/getFile', (req, res) => {
  const token = req.params.token;
  const fileId = String((req.body && req.body.file_id) || req.query.file_id || '');
  logFileRequest(token, { kind: 'getFile', fileId });
  const file = files.get(`${token}\n${fileId}`);
  if (!file) {
    res.status(400).json({ ok: false, error_code: 400, description: 'Bad Request: invalid file_id' });
    return;
  }
  res.json({ ok: true, result: {
    file_id: fileId, file_unique_id: `u${fileId}`, file_size: file.data.length, file_path: file.path,
  } });
});
app.post('/putFile', express.raw({ type: () => true, limit: '30mb' }), (req, res) => {
  const token = String(req.query.token);
  const fileId = String(req.query.fileId);
  const path = `voice/file_${files.size}.oga`;
  files.set(`${token}\n${fileId}`, { data: Buffer.from(req.body), path });
  res.json({ ok: true, result: path });
});
const mediaSent = new Map(); // token -> [{method, chat_id, caption, body}]
let mediaMessageId = 100000;
for (const method of ['sendVoice', 'sendPhoto']) {
  app.post(`/bot:token/${method}`, express.raw({ type: () => true, limit: '60mb' }), (req, res) => {
    const token = req.params.token;
    const body = Buffer.from(req.body || []);
    const text = body.toString('latin1');
    const field = (name) => {
      const m = text.match(new RegExp(`name="${name}"\\r\\n(?:[^\\r]*\\r\\n)*?\\r\\n([^\\r]*)`));
      return m ? m[1] : null;
    };
    const chatId = field('chat_id');
    if (!mediaSent.has(token)) mediaSent.set(token, []);
    mediaSent.get(token).push({ method, chat_id: chatId, caption: field('caption'), body: body.toString('base64') });
    const file = { file_id: `sent${mediaMessageId}`, file_unique_id: `usent${mediaMessageId}` };
    const media = method === 'sendVoice'
      ? { voice: { ...file, duration: 1 } }
      : { photo: [{ ...file, width: 1, height: 1 }] };
    res.json({ ok: true, result: {
      message_id: mediaMessageId++, date: Math.floor(Date.now() / 1000),
      chat: { id: Number(chatId), type: 'private' }, ...media,
    } });
  });
}
app.post('/mediaSent', (req, res) => {
  res.json({ ok: true, result: mediaSent.get(String(req.body.token)) || [] });
});
const webhookCalls = new Map(); // token -> [{method, params}]
function recordWebhookCall(req, method) {
  const token = req.params.token;
  const params = Object.assign({}, req.query, req.body || {});
  if (!webhookCalls.has(token)) webhookCalls.set(token, []);
  webhookCalls.get(token).push({ method, params });
  return params;
}
app.all('/bot:token/setWebhook', (req, res) => {
  const params = recordWebhookCall(req, 'setWebhook');
  if (!params.url) {
    res.status(400).json({ ok: false, error_code: 400, description: 'Bad Request: bad webhook: URL is empty' });
    return;
  }
  server.setWebhook({ url: params.url, secret_token: params.secret_token }, req.params.token);
  res.json({ ok: true, result: true, description: 'Webhook was set' });
});
app.all('/bot:token/deleteWebhook', (req, res) => {
  recordWebhookCall(req, 'deleteWebhook');
  server.deleteWebhook(req.params.token);
  res.json({ ok: true, result: true, description: 'Webhook was deleted' });
});
app.post('/webhookCalls', (req, res) => {
  res.json({ ok: true, result: webhookCalls.get(String(req.body.token)) || [] });
});
app.post('/fileRequests', (req, res) => {
  res.json({ ok: true, result: fileRequests.get(String(req.body.token)) || [] });
});
app.get('/file/bot:token/*', (req, res) => {
  const token = req.params.token;
  const path = req.params[0];
  logFileRequest(token, { kind: 'download', path });
  const file = [...files.entries()].find(([key, f]) => key.startsWith(`${token}\n`) && f.path === path);
  if (!file) {
    res.status(404).send('Not Found');
    return;
  }
  res.type('application/octet-stream').send(file[1].data);
});

// Routes were registered in the constructor: move ours in front of the first route.
const stack = app._router.stack;
const ours = stack.splice(before, stack.length - before);
const firstRoute = stack.findIndex((layer) => layer.route !== undefined);
stack.splice(firstRoute, 0, ...ours);

server.start().then(() => {
  process.stdout.write(`listening ${port}\n`);
});
const stop = () => { server.stop().finally(() => process.exit(0)); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
