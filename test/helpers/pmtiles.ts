// Test helper: local files for the `pmtiles` package, the reference reader archives are checked against.
import { closeSync, openSync, readSync } from 'node:fs';
import type { RangeResponse, Source } from 'pmtiles';

/** The `pmtiles` package reads through a Source; this one reads a local file, counting reads. */
export class NodeFileSource implements Source {
  reads = 0;
  private readonly fd: number;
  constructor(private readonly path: string) {
    this.fd = openSync(path, 'r');
  }
  getKey(): string {
    return this.path;
  }
  async getBytes(offset: number, length: number): Promise<RangeResponse> {
    this.reads++;
    const buf = new Uint8Array(length);
    // the package asks for 16384 bytes up front: a smaller archive answers with what there is
    const n = readSync(this.fd, buf, 0, length, offset);
    return { data: buf.buffer.slice(0, n) };
  }
  close(): void {
    closeSync(this.fd);
  }
}
