/**
 * The event feed: one websocket to /jupyter-faas/events, reopened with backoff when it
 * drops (the FaaS server restarted, the laptop slept). Reconnecting tells `connection`
 * listeners, who re-read state, since events sent while it was down are gone.
 */
import { ISignal, Signal } from '@lumino/signaling';
import { FeedEvent } from './types';

export class EventFeed {
  constructor(url: string, socketClass: typeof WebSocket = WebSocket) {
    this._url = url;
    this._socketClass = socketClass;
    this._open();
  }

  get received(): ISignal<this, FeedEvent[]> {
    return this._received;
  }
  get connection(): ISignal<this, boolean> {
    return this._connection;
  }

  /** Ask for the live log lines of these invocations (kept across reconnects). */
  watch(requestIds: string[]): void {
    const message = JSON.stringify({ watch: requestIds });
    if (message === this._watch) {
      return;
    }
    this._watch = message;
    if (this._socket?.readyState === WebSocket.OPEN) {
      this._socket.send(message);
    }
  }

  dispose(): void {
    this._disposed = true;
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    this._socket?.close();
    Signal.clearData(this);
  }

  private _open(): void {
    const socket = new this._socketClass(this._url);
    this._socket = socket;
    socket.onopen = () => {
      this._delay = 500;
      socket.send(this._watch);
      this._connection.emit(true);
    };
    socket.onmessage = (msg: MessageEvent) => {
      let data: { events?: FeedEvent[]; error?: string };
      try {
        data = JSON.parse(msg.data as string);
      } catch {
        return;
      }
      if (data.events) {
        this._received.emit(data.events);
      } else if (data.error) {
        console.warn('jupyter-faas event feed:', data.error);
      }
    };
    socket.onclose = () => {
      this._connection.emit(false);
      if (!this._disposed) {
        this._timer = setTimeout(() => {
          this._timer = null;
          this._open();
        }, this._delay);
        this._delay = Math.min(this._delay * 2, 10000);
      }
    };
  }

  private _url: string;
  private _socketClass: typeof WebSocket;
  private _socket: WebSocket | null = null;
  private _watch = JSON.stringify({ watch: [] });
  private _delay = 500;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _disposed = false;
  private _received = new Signal<this, FeedEvent[]>(this);
  private _connection = new Signal<this, boolean>(this);
}
