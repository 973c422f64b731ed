#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Read and poke the persistent bitmaps of a qcow2 image for the integration tests.

usage: qcow2_bitmaps.py IMG COMMAND [ARGS]
  dump             print the bitmaps extension, each directory entry (offsets left out
                   with -n) and the dirty ranges of its data, in bytes of the disk
  ranges NAME      print the dirty ranges of bitmap NAME as "start length" lines
  flags NAME [V]   print / set the flags of bitmap NAME's directory entry
  ext FIELD V      set a field of the bitmaps extension (nb_bitmaps, reserved32,
                   dir_size, dir_offset)
  entry NAME FIELD V  set a directory entry field (table_offset, table_size, flags,
                   type, granularity_bits, name_size, extra_data_size)
"""
import struct
import sys

EXT_BITMAPS = 0x23852875
ENTRY_FMT = '>QIIBBHI'
ENTRY_FIELDS = ['table_offset', 'table_size', 'flags', 'type', 'granularity_bits',
                'name_size', 'extra_data_size']
ENTRY_OFFS = [0, 8, 12, 16, 17, 18, 20]
EXT_FIELDS = {'nb_bitmaps': (0, '>I'), 'reserved32': (4, '>I'), 'dir_size': (8, '>Q'),
              'dir_offset': (16, '>Q')}
OFFSET_MASK = 0x00fffffffffffe00


class Image:
    def __init__(self, path, write=False):
        self.f = open(path, 'r+b' if write else 'rb')
        self.data = self.f.read()
        self.cs = 1 << struct.unpack_from('>I', self.data, 20)[0]
        self.size = struct.unpack_from('>Q', self.data, 24)[0]
        self.ext_pos = None
        hlen = struct.unpack_from('>I', self.data, 100)[0]
        pos = hlen
        while pos + 8 <= self.cs:
            magic, length = struct.unpack_from('>II', self.data, pos)
            if magic == 0:
                break
            if magic == EXT_BITMAPS:
                self.ext_pos = pos + 8
            pos += 8 + (length + 7) // 8 * 8

    def ext(self):
        if self.ext_pos is None:
            return None
        return struct.unpack_from('>IIQQ', self.data, self.ext_pos)

    def entries(self):
        e = self.ext()
        if not e:
            return []
        nb, _, dsize, doff = e
        out, pos = [], doff
        for _ in range(nb):
            vals = struct.unpack_from(ENTRY_FMT, self.data, pos)
            ent = dict(zip(ENTRY_FIELDS, vals))
            npos = pos + 24 + ent['extra_data_size']
            ent['name'] = self.data[npos:npos + ent['name_size']].decode()
            ent['pos'] = pos
            out.append(ent)
            pos = (npos + ent['name_size'] + 7) // 8 * 8
        return out

    def ranges(self, ent):
        """Dirty ranges (start, length) in bytes of the disk."""
        gran = 1 << ent['granularity_bits']
        nbits = (self.size + gran - 1) // gran
        bits_per_cluster = self.cs * 8
        out = []
        for i in range(ent['table_size']):
            te = struct.unpack_from('>Q', self.data, ent['table_offset'] + 8 * i)[0]
            off = te & OFFSET_MASK
            first = i * bits_per_cluster
            n = min(bits_per_cluster, nbits - first)
            if off:
                chunk = self.data[off:off + self.cs].ljust(self.cs, b'\0')
                bits = [(chunk[b // 8] >> (b % 8)) & 1 for b in range(n)]
            else:
                bits = [te & 1] * n
            for b, v in enumerate(bits):
                if not v:
                    continue
                s = (first + b) * gran
                if out and out[-1][0] + out[-1][1] == s:
                    out[-1][1] += gran
                else:
                    out.append([s, gran])
        return [(s, min(ln, self.size - s)) for s, ln in out]

    def put(self, off, fmt, value):
        self.f.seek(off)
        self.f.write(struct.pack(fmt, value))


def find(img, name):
    for e in img.entries():
        if e['name'] == name:
            return e
    sys.exit('no bitmap ' + name)


def main():
    args = sys.argv[1:]
    noff = '-n' in args
    args = [a for a in args if a != '-n']
    path, cmd, *rest = args
    img = Image(path, write=cmd in ('ext', 'entry') or (cmd == 'flags' and len(rest) > 1))
    if cmd == 'dump':
        e = img.ext()
        if not e:
            print('no bitmaps extension')
            return
        print('nb_bitmaps %d dir_size %d' % (e[0], e[2]) +
              ('' if noff else ' dir_offset %#x' % e[3]))
        for ent in img.entries():
            print('%s: flags %#x type %d granularity_bits %d table_size %d%s' % (
                ent['name'], ent['flags'], ent['type'], ent['granularity_bits'],
                ent['table_size'], '' if noff else ' table_offset %#x' % ent['table_offset']))
            for s, ln in img.ranges(ent):
                print('  dirty %d %d' % (s, ln))
    elif cmd == 'ranges':
        for s, ln in img.ranges(find(img, rest[0])):
            print(s, ln)
    elif cmd == 'flags':
        ent = find(img, rest[0])
        if len(rest) > 1:
            img.put(ent['pos'] + 12, '>I', int(rest[1], 0))
        else:
            print(ent['flags'])
    elif cmd == 'ext':
        off, fmt = EXT_FIELDS[rest[0]]
        img.put(img.ext_pos + off, fmt, int(rest[1], 0))
    elif cmd == 'entry':
        ent = find(img, rest[0])
        i = ENTRY_FIELDS.index(rest[1])
        fmt = '>' + ENTRY_FMT[1 + i]
        img.put(ent['pos'] + ENTRY_OFFS[i], fmt, int(rest[2], 0))
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main()
