// The one XML writer of the protocols (capabilities, TileMap, ExceptionReport, GML feature info): every
// text and attribute goes through fast-xml-parser's builder, so names from requests and layers are escaped.

import { XMLBuilder } from 'fast-xml-parser';

// suppressBooleanAttributes off: the builder would otherwise write an attribute valued "true" bare (not XML)
const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@', format: true, suppressEmptyNode: true, suppressBooleanAttributes: false });

/** An XML document: the declaration, then the tree (`@name` keys are attributes). */
export function xmlDocument(root: Record<string, unknown>): string {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + builder.build(root);
}

export const XML_TYPE = 'application/xml; charset=utf-8';
