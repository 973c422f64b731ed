#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Read and poke qcow2 metadata for the integration tests (damaging images on purpose,
and comparing the metadata two tools produced).

usage: qcow2_tool.py IMG COMMAND [ARGS]
  hdr FIELD [VALUE]     print / set a header field (by its qcow2.txt name)
  l1 I [VALUE]          print / set active L1 entry I
  l2 I J [VALUE]        print / set entry J of the L2 table that L1 entry I points at
  reft I [VALUE]        print / set refcount table entry I
  rc CLUSTER [VALUE]    print / set the refcount of a host cluster (any refcount width)
  dump                  print the metadata that must match between two tools: header
                        fields, L1 and L2 tables (active and snapshots), snapshot table
                        (dates left out) and the refcount of every cluster up to EOF
Numbers may be given in any Python integer syntax (0x...).
"""
import struct
import sys

FIELDS = {
    'magic': (0, '>I'), 'version': (4, '>I'), 'backing_file_offset': (8, '>Q'),
    'backing_file_size': (16, '>I'), 'cluster_bits': (20, '>I'), 'size': (24, '>Q'),
    'crypt_method': (32, '>I'), 'l1_size': (36, '>I'), 'l1_table_offset': (40, '>Q'),
    'refcount_table_offset': (48, '>Q'), 'refcount_table_clusters': (56, '>I'),
    'nb_snapshots': (60, '>I'), 'snapshots_offset': (64, '>Q'),
    'incompatible_features': (72, '>Q'), 'compatible_features': (80, '>Q'),
    'autoclear_features': (88, '>Q'), 'refcount_order': (96, '>I'),
    'header_length': (100, '>I'),
}
OFFSET_MASK = 0x00fffffffffffe00


class Image:
    def __init__(self, path, write=False):
        self.f = open(path, 'r+b' if write else 'rb')
        self.data = self.f.read()   # test images are small: parse from memory
        self.cluster_bits = self.get('cluster_bits')
        self.cs = 1 << self.cluster_bits
        self.version = self.get('version')
        self.order = self.get('refcount_order') if self.version >= 3 else 4
        self.ext_l2 = self.version >= 3 and (self.get('incompatible_features') >> 4) & 1
        self.l2_entry = 16 if self.ext_l2 else 8

    def read(self, off, fmt):
        n = struct.calcsize(fmt)
        data = self.data[off:off + n]
        return struct.unpack(fmt, data + b'\0' * (n - len(data)))[0]

    def write(self, off, fmt, value):
        raw = struct.pack(fmt, value)
        self.f.seek(off)
        self.f.write(raw)
        if off > len(self.data):
            self.data += b'\0' * (off - len(self.data))
        self.data = self.data[:off] + raw + self.data[off + len(raw):]

    def get(self, name):
        return self.read(*FIELDS[name])

    def l1_off(self, i):
        return self.get('l1_table_offset') + 8 * i

    def l2_off(self, i, j):
        return (self.read(self.l1_off(i), '>Q') & OFFSET_MASK) + self.l2_entry * j

    def reft_off(self, i):
        return self.get('refcount_table_offset') + 8 * i

    def rc_loc(self, cluster):
        bits = 1 << self.order
        per_block = self.cs * 8 // bits
        block = self.read(self.reft_off(cluster // per_block), '>Q') & ~0x1ff
        if not block:
            return None
        bit = (cluster % per_block) * bits
        return block, bit, bits

    def get_rc(self, cluster):
        loc = self.rc_loc(cluster)
        if loc is None:
            return 0
        block, bit, bits = loc
        if bits < 8:
            return (self.read(block + bit // 8, '>B') >> (bit % 8)) & ((1 << bits) - 1)
        fmt = {8: '>B', 16: '>H', 32: '>I', 64: '>Q'}[bits]
        return self.read(block + bit // 8, fmt)

    def set_rc(self, cluster, value):
        block, bit, bits = self.rc_loc(cluster)
        if bits < 8:
            byte = self.read(block + bit // 8, '>B')
            mask = ((1 << bits) - 1) << (bit % 8)
            self.write(block + bit // 8, '>B', (byte & ~mask) | ((value << (bit % 8)) & mask))
        else:
            fmt = {8: '>B', 16: '>H', 32: '>I', 64: '>Q'}[bits]
            self.write(block + bit // 8, fmt, value)

    def snapshots(self):
        off = self.get('snapshots_offset')
        out = []
        for _ in range(self.get('nb_snapshots')):
            off = (off + 7) & ~7
            d = self.data
            l1o, l1s, idl, nml, _ds, _dn, vmc, vms, eds = struct.unpack('>QIHHIIQII',
                                                                       d[off:off + 40])
            extra = d[off + 40:off + 40 + eds]
            ident = d[off + 40 + eds:off + 40 + eds + idl].decode()
            name = d[off + 40 + eds + idl:off + 40 + eds + idl + nml].decode()
            out.append((l1o, l1s, ident, name, vmc, vms, extra.hex()))
            off += 40 + eds + idl + nml
        return out

    def dump_l1(self, label, off, size):
        print(f'{label} L1 at {off:#x} size {size}')
        for i in range(size):
            e = self.read(off + 8 * i, '>Q')
            if not e:
                continue
            print(f'  L1[{i}] = {e:#x}')
            l2 = e & OFFSET_MASK
            for j in range(self.cs // self.l2_entry):
                v = self.read(l2 + self.l2_entry * j, '>Q')
                b = self.read(l2 + self.l2_entry * j + 8, '>Q') if self.ext_l2 else 0
                if v or b:
                    print(f'    L2[{j}] = {v:#x} {b:#x}')

    def dump(self):
        for name in FIELDS:
            if FIELDS[name][0] < (104 if self.version >= 3 else 72):
                print(f'{name} = {self.get(name):#x}')
        self.dump_l1('active', self.get('l1_table_offset'), self.get('l1_size'))
        for sn in self.snapshots():
            print('snapshot l1=%#x l1_size=%d id=%s name=%s vm_clock=%d vm_state=%d '
                  'extra=%s' % sn)
            self.dump_l1('snapshot', sn[0], sn[1])
        clusters = (len(self.data) + self.cs - 1) // self.cs
        print('refcounts:', ' '.join(str(self.get_rc(c)) for c in range(clusters)))


def num(s):
    return int(s, 0)


def main():
    path, cmd, *args = sys.argv[1:]
    img = Image(path, write=cmd != 'dump')
    if cmd == 'hdr':
        off, fmt = FIELDS[args[0]]
        if len(args) > 1:
            img.write(off, fmt, num(args[1]))
        else:
            print(hex(img.read(off, fmt)))
    elif cmd in ('l1', 'l2', 'reft'):
        nidx = 2 if cmd == 'l2' else 1
        idx = [num(a) for a in args[:nidx]]
        off = {'l1': img.l1_off, 'l2': img.l2_off, 'reft': img.reft_off}[cmd](*idx)
        if len(args) > nidx:
            img.write(off, '>Q', num(args[nidx]))
        else:
            print(hex(img.read(off, '>Q')))
    elif cmd == 'rc':
        if len(args) > 1:
            img.set_rc(num(args[0]), num(args[1]))
        else:
            print(img.get_rc(num(args[0])))
    elif cmd == 'dump':
        img.dump()
    else:
        sys.exit(f'unknown command {cmd}')


if __name__ == '__main__':
    main()
