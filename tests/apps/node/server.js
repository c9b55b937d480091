// A small express app, as a Node.js user deploys one (`web: npm start`), with the endpoints
// hostd's real-app tests look at.
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const express = require('express');

const app = express();
const port = Number(process.env.PORT || 5000);

app.get('/', (req, res) => res.send('ok'));

// Answers after ms milliseconds: a request still in flight when the dyno is told to stop.
app.get('/slow', (req, res) => {
  const ms = Number(req.query.ms || 1000);
  console.log(`slow request started (${ms} ms)`);
  setTimeout(() => res.send(`slow request completed after ${ms} ms`), ms);
});

// The memory limit of the dyno, as apps size their heaps: the cgroup's, v2 then v1.
app.get('/limit', (req, res) => {
  for (const f of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      return res.send(fs.readFileSync(f, 'utf8').trim());
    } catch (e) {
      if (e.code !== 'ENOENT') return res.status(500).send(`${f}: ${e.message}`);
    }
  }
  res.status(500).send('no memory limit in /sys/fs/cgroup');
});

app.get('/whoami', (req, res) => {
  try {
    res.send(os.userInfo().username);
  } catch (e) {
    res.status(500).send(`os.userInfo(): ${e.message}`);
  }
});

app.get('/env', (req, res) => {
  const name = String(req.query.name || '');
  if (!(name in process.env)) return res.status(404).send(`${name} is not set`);
  res.send(process.env[name]);
});

// A child that takes memory until the kernel's OOM killer ends it; the app itself stays up.
// The child volunteers to be the one killed (oom_score_adj), as a worker pool's children do.
const HOG = `
try { require('fs').writeFileSync('/proc/self/oom_score_adj', '1000'); } catch (e) {}
const hog = [];
for (;;) hog.push(Buffer.alloc(8 << 20, 1));
`;
app.get('/oom', (req, res) => {
  const child = spawn(process.execPath, ['-e', HOG], { stdio: 'inherit' });
  console.log(`oom child ${child.pid} started`);
  child.on('exit', (code, signal) => {
    console.log(`oom child ${child.pid} ended: ${signal ? `killed by ${signal}` : `exit status ${code}`}`);
  });
  res.status(202).send(`oom child ${child.pid} started`);
});

const server = app.listen(port, () => {
  console.log(`listening on port ${port}, WEB_CONCURRENCY=${process.env.WEB_CONCURRENCY}`);
});

// SIGTERM: take no new connections, let the requests in flight finish, then the shutdown
// hook. It may come twice (from the platform and relayed by npm): once is enough.
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  console.log('SIGTERM received, finishing requests in flight');
  server.close(() => {
    console.log('shutdown hook ran');
    process.exit(0);
  });
  server.closeIdleConnections();
});
