"""OWSLib as a tuile client (run by interop/run.mjs): reads the WMTS capabilities (RESTful and KVP) and
the TMS service, and fetches one tile through each. Prints one JSON report on stdout with the tiles'
SHA-1, which run.mjs compares with the XYZ tile's; every failure is a report entry."""
import hashlib
import json
import sys
import traceback

import owslib
from owslib.tms import TileMapService
from owslib.wmts import WebMapTileService

args = json.loads(sys.argv[1])
base, layer, z, x, y = args['base'], args['layer'], args['z'], args['x'], args['y']
report = {'version': owslib.__version__, 'checks': {}}


def check(name, fn):
    try:
        report['checks'][name] = {'ok': True, **fn()}
    except Exception:  # noqa: BLE001 - the report says what failed
        report['checks'][name] = {'ok': False, 'error': traceback.format_exc(limit=3)}


def wmts(url):
    def run():
        s = WebMapTileService(url)
        c = s.contents[layer]
        tile = s.gettile(layer=layer, tilematrixset='PM', tilematrix=str(z), row=y, column=x, format='image/png', style='normal')
        data = tile.read()
        limits = c.tilematrixsetlinks['PM'].tilematrixlimits
        return {'bbox': list(c.boundingBoxWGS84), 'levels': sorted(int(k) for k in limits),
                'infoformats': list(getattr(c, 'infoformats', []) or []), 'sha1': hashlib.sha1(data).hexdigest()}
    return run


def tms():
    s = TileMapService(f"{base}/tms/1.0.0/")
    url = f"{base}/tms/1.0.0/{layer}"
    tm = s.contents[url]
    tile = s.gettile(x, 2 ** z - 1 - y, z, id=url)
    data = tile.read()
    return {'srs': tm.srs, 'tilesets': len(tm.tilemap.tilesets) if getattr(tm, 'tilemap', None) else None,
            'sha1': hashlib.sha1(data).hexdigest()}


check('wmts-rest', wmts(f"{base}/wmts/1.0.0/WMTSCapabilities.xml"))
check('wmts-kvp', wmts(f"{base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities"))
check('tms', tms)
print(json.dumps(report))
