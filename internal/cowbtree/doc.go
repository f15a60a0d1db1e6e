// Package cowbtree is an ordered map kept as a copy-on-write B+tree whose
// updates come in sorted batches.
//
// A Tree shares its nodes with the trees it was cloned from: Clone is O(1)
// and does not write the tree it clones, so any number of goroutines may
// clone and read a tree nobody changes. An update copies only the nodes it
// touches that the updated tree does not own yet, and a batch (Apply)
// walks the tree once for all its keys: each touched node is copied once,
// and a leaf's entries are merged with the batch's in one pass instead of
// one root-to-leaf search per key. This is what the durable store needs to
// bring a thousand committed keys into the tree that readers share: the
// cost is one leaf copy per touched leaf and one copy of each touched
// inner node, not a search and a path copy per key.
//
// Entries live in the leaves; an inner node keeps the smallest key of each
// of its kids. Every node but the root holds between a quarter of the
// maximum and the maximum (32 entries per leaf, 32 kids per inner node),
// and every leaf is at the same depth: an update splits the nodes that
// grew past the maximum evenly, and joins a node left under its minimum
// with a neighbour (the parent does, after its kids' updates). Set of a key
// past every other, into a last leaf the tree owns and that has room (a
// load in key order, as recovery's from a snapshot), appends without a
// search: 185-200 ns per key loading a million keys, 305 with the search.
//
// Why not github.com/google/btree, which durable used before: its Clone
// writes the tree it clones (two goroutines cloning one published tree
// race), and its updates are one key at a time, each searching from the
// root and copying whole nodes of items. Applying 1,024 random keys to a
// clone of a 100k-key tree copied about 1.8 KB per key with it, 1.0 KB
// here; the durable store's heap at a million keys went from 1.36 to 1.20
// times the raw key and value bytes.
package cowbtree
