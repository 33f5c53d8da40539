package smtp

// Pending returns, and consumes, the bytes the client sent that were read
// from the connection but not yet parsed. When a session changes hands
// (to the tarpit), these commands must be answered by the new owner, in
// order, as if they had just arrived.
func (r *Reader) Pending() []byte {
	n := r.br.Buffered()
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	r.br.Read(b)
	return b
}
