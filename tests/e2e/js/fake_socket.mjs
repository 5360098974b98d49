// A scripted stand-in for the browser's WebSocket, shared by the seasync.js node tests: the test opens it,
// feeds it server frames and reads what the client sent; `all` lists every socket made, newest last.

export class FakeSocket {
  static all = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }

  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(message) {
    this.onmessage?.({data: typeof message === "string" ? message : JSON.stringify(message)});
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  take() {
    const out = this.sent;
    this.sent = [];
    return out;
  }

  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({code: 1006});
  }
}

export const quiet = {debug() {}, info() {}, warn() {}, error() {}, log() {}};
