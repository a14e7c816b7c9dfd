/**
 * A read of the server that the panel asks for often (on every feed event): calls while one
 * is out make one more read after it, not one each, and every caller's promise ends once the
 * read it asked for (or a later one) is done.
 */
export class CoalescedRead {
  constructor(read: () => Promise<void>) {
    this._read = read;
  }

  async run(): Promise<void> {
    if (this._reading) {
      this._again = true;
      return this._reading;
    }
    this._reading = (async () => {
      do {
        this._again = false;
        await this._read();
      } while (this._again);
    })();
    try {
      await this._reading;
    } finally {
      this._reading = null;
    }
  }

  private _read: () => Promise<void>;
  private _reading: Promise<void> | null = null;
  private _again = false;
}
