package server

import (
	"encoding/hex"
	"hash/maphash"
	"sync/atomic"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

// answer is a /calc answer as sent: its body and ETag header, for one key and result.
type answer struct {
	key  string
	res  calc.Result
	body []byte
	etag []string // the header value; shared read-only by every answer sent from it
}

// answers keeps the answers last sent, one per slot: a hot key's body and ETag are
// built once and then sent as they are, instead of hashing the key, hex- and
// base64-encoding the document for every hit. A slot holds the latest answer whose
// key hashes to it; an answer is used only for its exact key and result, so a
// collision or a changed result costs a rebuild, never a wrong answer.
type answers struct {
	format  calc.Format
	version int
	seed    maphash.Seed
	slots   [answerSlots]atomic.Pointer[answer]
}

// answerSlots bounds the answers kept (about 400 bytes each with a short key).
const answerSlots = 1024

func newAnswers(f calc.Format, version int) *answers {
	return &answers{format: f, version: version, seed: maphash.MakeSeed()}
}

// get returns the answer for key and res, built now if the slot holds another.
func (a *answers) get(key string, res *calc.Result) *answer {
	slot := &a.slots[maphash.String(a.seed, key)%answerSlots]
	if an := slot.Load(); an != nil && an.res == *res && an.key == key {
		return an
	}
	an := &answer{key: key, res: *res}
	an.body = calc.AppendBody(make([]byte, 0, calc.TokenSize), a.format, a.version, []byte(key), res)
	var tag [2 + 2*calc.Size]byte
	an.etag = []string{string(append(hex.AppendEncode(append(tag[:0], '"'), res[:]), '"'))}
	slot.Store(an)
	return an
}
