// Pyramid storage: where a pyramid folder's descriptor and archive are read from. Pyramids are named by
// their folder path everywhere (state, descriptors' parent paths, layer specs); the storage decides
// what that folder is: the local folder itself, or objects in a store (DESIGN 8).

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TuileError, errorMessage } from '../errors.js';
import { FileSource, type ByteSource } from './byte-source.js';
import { ARCHIVE, DESCRIPTOR, parseDescriptor, type PyramidDescriptor } from './descriptor.js';

export interface PyramidStorage {
  /** `file`, or the store's URL: names the storage in messages. */
  readonly url: string;
  /** The descriptor of the pyramid folder `dir`; NotFound when there is no pyramid there. */
  readDescriptor(dir: string): Promise<PyramidDescriptor>;
  /** The bytes of the pyramid's archive, for a PMTilesReader (which closes them). */
  openArchive(dir: string): Promise<ByteSource>;
}

/** Pyramids as folders on the local file system: the embedded default. */
export const localStorage: PyramidStorage = {
  url: 'file',
  async readDescriptor(dir: string): Promise<PyramidDescriptor> {
    let text: string;
    try {
      text = await readFile(join(dir, DESCRIPTOR), 'utf8');
    } catch (err) {
      throw new TuileError('NotFound', `${dir}: not a pyramid folder (${errorMessage(err)})`);
    }
    return parseDescriptor(text, dir);
  },
  openArchive(dir: string): Promise<ByteSource> {
    return FileSource.open(join(dir, ARCHIVE));
  },
};

let current: PyramidStorage = localStorage;

/** The storage of this process's pyramids. */
export function pyramidStorage(): PyramidStorage {
  return current;
}

/** Reads the descriptor of a pyramid folder from the process's storage. */
export function readDescriptor(dir: string): Promise<PyramidDescriptor> {
  return current.readDescriptor(dir);
}
