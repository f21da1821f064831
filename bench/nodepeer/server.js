// The Node peer of chat-gateway's bench: socket.io with @socket.io/redis-adapter.
// The same chat as bench/peer_socketio.py: `join` {room, name} (acked once in the room),
// `send` {room, text} emitted to the room as `msg` {room, from, text, ts}, then acked.
//   NODE_PATH=bench/.node/node_modules node bench/nodepeer/server.js --port P --redis-url URL
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

function flag(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`${name} is required`);
  return process.argv[i + 1];
}

async function main() {
  const port = Number(flag("--port"));
  const pub = createClient({ url: flag("--redis-url") });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer((req, res) => {
    res.statusCode = req.url === "/healthz" ? 200 : 404;
    res.end(req.url === "/healthz" ? "ok" : "");
  });
  const io = new Server(server, {
    transports: ["websocket"],
    serveClient: false,
    adapter: createAdapter(pub, sub),
  });
  io.on("connection", (socket) => {
    socket.on("join", (data, ack) => {
      socket.data.name = String(data.name);
      socket.join(String(data.room));
      if (typeof ack === "function") ack({ ok: true });
    });
    socket.on("send", (data, ack) => {
      const room = String(data.room);
      io.to(room).emit("msg", { room, from: socket.data.name, text: data.text, ts: Date.now() });
      if (typeof ack === "function") ack({ ok: true });
    });
  });
  const stop = () => { io.close(); Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0)); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  server.listen(port, "127.0.0.1");
}

main().catch((err) => { console.error(err); process.exit(1); });
