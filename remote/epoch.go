package remote

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/procyon-dev/procyon/durable"
)

// Epocher gives a starting master its epoch: a number larger than any an
// earlier master of this control plane had, so that nodes and the
// dispatcher tell a stale master's messages from the current one's. The
// default (Options.Epoch nil) is a counter in "<Name>.meta" that Start
// bumps durably; with HA it is the election revision.
type Epocher interface {
	NextEpoch(ctx context.Context) (uint64, error)
}

// metaEpochV1 versions the "epoch" value of "<Name>.meta". Part of the
// on-disk format: never change it.
const metaEpochV1 = 1

const metaEpochKey = "epoch"

// storeEpoch is the default Epocher: "<Name>.meta"["epoch"] + 1, durable
// before it is returned.
type storeEpoch struct {
	s    *durable.Store
	meta *durable.Collection[string, uint64]
}

func (se storeEpoch) NextEpoch(ctx context.Context) (uint64, error) {
	var epoch uint64
	err := se.s.Write(ctx, func(tx *durable.Tx) error {
		last, _, err := se.meta.Get(tx, metaEpochKey)
		if err != nil {
			return err
		}
		epoch = last + 1
		return se.meta.Put(tx, metaEpochKey, epoch)
	})
	return epoch, err
}

func metaCodec() durable.Codec[uint64] {
	return durable.CodecFunc(
		func(v uint64) ([]byte, error) { return binary.AppendUvarint([]byte{metaEpochV1}, v), nil },
		func(b []byte) (uint64, error) {
			d := decoder{what: "meta value", b: b}
			if v := d.byte(); v != metaEpochV1 && d.err == nil {
				return 0, fmt.Errorf("remote: meta value: unknown version %d", v)
			}
			v := d.uvarint()
			d.end()
			return v, d.err
		})
}
