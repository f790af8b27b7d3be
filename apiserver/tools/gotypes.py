"""Extract Go struct layouts (field name, tag, pointer-ness) from a Go ELF binary.

Only used by gen_protobuf_table.py to learn which Kubernetes API fields are Go
pointers (presence-tracked) and which carry `omitempty`.
"""
import struct, sys, re
from array import array

KIND = {1: 'bool', 2: 'int', 5: 'int32', 6: 'int64', 8: 'uint8', 7: 'uint', 10: 'uint32', 11: 'uint64',
        13: 'float32', 14: 'float64', 17: 'array', 20: 'interface', 21: 'map', 22: 'ptr', 23: 'slice',
        24: 'string', 25: 'struct'}


class Binary:
    def __init__(self, path):
        self.data = open(path, 'rb').read()
        d = self.data
        shoff, = struct.unpack_from('<Q', d, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from('<HHH', d, 0x3a)
        secs = []
        for i in range(shnum):
            name, typ, flags, addr, off, size = struct.unpack_from('<IIQQQQ', d, shoff + i * shentsize)
            secs.append([name, addr, off, size, typ])
        stroff = secs[shstrndx][2]
        self.sections = {}
        for name, addr, off, size, typ in secs:
            n = d[stroff + name:d.index(b'\0', stroff + name)].decode()
            self.sections[n] = (addr, off, size, typ)
        self.rodata = self.sections['.rodata']
        self.types_base = self.rodata[0]

    def off(self, vaddr):
        for addr, off, size, typ in self.sections.values():
            if addr <= vaddr < addr + size and typ != 8:
                return off + vaddr - addr
        raise ValueError(hex(vaddr))

    def u64(self, vaddr):
        return struct.unpack_from('<Q', self.data, self.off(vaddr))[0]

    def i32(self, vaddr):
        return struct.unpack_from('<i', self.data, self.off(vaddr))[0]

    def u8(self, vaddr):
        return self.data[self.off(vaddr)]

    def varint(self, o):
        v = s = 0
        while True:
            b = self.data[o]; o += 1
            v |= (b & 0x7f) << s; s += 7
            if b < 0x80:
                return v, o

    def name(self, vaddr):
        """Decode an abi.Name: (name, tag)."""
        o = self.off(vaddr)
        flags = self.data[o]
        n, o = self.varint(o + 1)
        nm = self.data[o:o + n].decode('utf-8', 'replace'); o += n
        tag = ''
        if flags & 2:
            t, o = self.varint(o)
            tag = self.data[o:o + t].decode('utf-8', 'replace')
        return nm, tag

    def kind(self, t):
        return KIND.get(self.u8(t + 23) & 0x1f, '?')

    def type_name(self, t):
        tflag = self.u8(t + 20)
        nm, _ = self.name(self.types_base + self.i32(t + 40))
        return nm[1:] if tflag & 2 else nm

    def describe(self, t):
        k = self.kind(t)
        if k == 'ptr':
            return 'ptr', self.describe(self.u64(t + 48))[1]
        if k == 'struct':
            return 'val', self.type_name(t)
        if k == 'slice':
            return 'val', '[]' + self.describe(self.u64(t + 48))[1]
        return 'val', self.type_name(t)


def structs(path, pkg_prefixes):
    """Yield (pkgpath, type name, [(field, tag, 'ptr'|'val', type)])."""
    b = Binary(path)
    addr, off, size, _ = b.rodata
    blob = b.data[off:off + size]
    # 1. every abi.Name that carries a protobuf struct tag
    names = set()
    for m in re.finditer(rb'[\x03\x0b]([\x01-\x7f])([A-Z][A-Za-z0-9_]*)([\x01-\x7f]|[\x80-\xff][\x01-\x7f])json:"', blob):
        if len(m.group(2)) == m.group(1)[0]:
            names.add(addr + m.start())
    # 2. StructField records that point at those names
    words = array('Q', blob[:size - size % 8])
    fields = set()
    for i, w in enumerate(words):
        if w in names:
            fields.add(addr + i * 8)
    # 3. struct types whose Fields slice starts at (or before) one of those fields
    for i in range(9, len(words) - 2):
        p = words[i]
        n = words[i + 1]
        if not (0 < n < 300 and words[i + 2] == n):
            continue
        if not any(p + 24 * j in fields for j in range(n)):
            continue
        t = addr + i * 8 - 56
        if b.kind(t) != 'struct':
            continue
        try:
            if words[i - 1]:
                pkg, _ = b.name(words[i - 1])
            elif b.u8(t + 20) & 1:  # TFlagUncommon: pkg path lives in the uncommon type
                pkg, _ = b.name(b.types_base + b.i32(t + 80))
            else:
                pkg = ''
            tname = b.type_name(t)
        except (ValueError, IndexError):
            continue
        if not any(pkg.startswith(pp) for pp in pkg_prefixes):
            continue
        out = []
        for j in range(n):
            fn, tag = b.name(b.u64(p + 24 * j))
            out.append((fn, tag) + b.describe(b.u64(p + 24 * j + 8)))
        yield pkg, tname, out


if __name__ == '__main__':
    for pkg, t, fs in structs(sys.argv[1], ['k8s.io/api/', 'k8s.io/apimachinery/']):
        print(pkg, t)
        for f in fs:
            print('   ', f)
