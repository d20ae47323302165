package kvcodec

// The library's I/O callbacks, exported to C. A file with //export may only
// declare in its preamble, so the C trampolines that adapt these to the C
// API's callback types live in cache.go. The opaque pointer the library
// passes back is a runtime/cgo.Handle of the Go object, never a Go pointer.

/*
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"io"
	"runtime/cgo"
	"unsafe"
)

//export kvcgoWrite
func kvcgoWrite(handle C.uintptr_t, data unsafe.Pointer, size C.size_t) C.int {
	sink := cgo.Handle(handle).Value().(*ioState)
	return C.int(sink.call(1, func() int {
		if size == 0 {
			return 0
		}
		// Copied out of the library's buffer by Write before it returns.
		_, err := sink.writer.Write(unsafe.Slice((*byte)(data), int(size)))
		return sink.fail(err, 0, 1)
	}))
}

//export kvcgoSync
func kvcgoSync(handle C.uintptr_t) C.int {
	sink := cgo.Handle(handle).Value().(*ioState)
	return C.int(sink.call(1, func() int {
		if sync, ok := sink.writer.(interface{ Sync() error }); ok {
			return sink.fail(sync.Sync(), 0, 1)
		}
		return 0
	}))
}

//export kvcgoReadAt
func kvcgoReadAt(handle C.uintptr_t, offset C.uint64_t, data unsafe.Pointer, size C.size_t) C.int {
	source := cgo.Handle(handle).Value().(*ioState)
	return C.int(source.call(1, func() int {
		if size == 0 {
			return 0
		}
		if uint64(offset) > uint64(1<<63-1) {
			return source.fail(io.ErrUnexpectedEOF, 0, 1)
		}
		n, err := source.readerAt.ReadAt(unsafe.Slice((*byte)(data), int(size)), int64(offset))
		if n == int(size) {
			return 0 // io.ReaderAt may report io.EOF with a full read at the end
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return source.fail(err, 0, 1)
	}))
}

//export kvcgoRead
func kvcgoRead(handle C.uintptr_t, data unsafe.Pointer, size C.size_t) C.int64_t {
	source := cgo.Handle(handle).Value().(*ioState)
	return C.int64_t(source.call(-1, func() int {
		if size == 0 {
			return 0
		}
		buffer := unsafe.Slice((*byte)(data), int(size))
		// io.Reader may return 0, nil; the C API reads 0 as the end.
		for {
			n, err := source.reader.Read(buffer)
			if n > 0 {
				return n
			}
			if err == io.EOF {
				return 0
			}
			if err != nil {
				return source.fail(err, 0, -1)
			}
		}
	}))
}
