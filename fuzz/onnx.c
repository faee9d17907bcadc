/* Fuzz target: the ONNX opset walk (lib/onnx.c), which gangliond runs on every ONNX upload as it
 * streams in and the CLI runs on a model file before it pushes it. The input is a model file.
 *
 * Properties: the three ways in agree, code and message: the whole buffer (gn_onnx_opset_buf),
 * the stream fed in pieces of 1 to 8 bytes (sizes drawn from the input), and the file reader
 * (gn_onnx_opset_fd on a memfd, which skips payloads unread); an accepted opset is 1..1000. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t a = -1, b = -1, c = -1;
	gn_err ea, eb, ec;
	int ra = gn_onnx_opset_buf(&a, data, size, &ea);
	FUZZ_CHECK(ra || (a >= 1 && a <= 1000), "opset %lld accepted", (long long)a);

	gn_onnx_stream *s = gn_onnx_stream_new();
	unsigned x = size ? data[0] : 1;
	for (size_t k = 0; k < size;) {
		x = x * 1103515245u + 12345u;
		size_t piece = 1 + (x >> 16) % 8;
		piece = piece < size - k ? piece : size - k;
		gn_onnx_stream_feed(s, data + k, piece);
		k += piece;
	}
	int rb = gn_onnx_stream_finish(s, &b, &eb);
	gn_onnx_stream_free(s);
	FUZZ_CHECK(rb == ra && (ra || b == a), "pieces: %d (%lld), whole: %d (%lld)", rb, (long long)b, ra,
		   (long long)a);
	FUZZ_CHECK(!ra || strcmp(ea.msg, eb.msg) == 0, "pieces say '%s', whole '%s'", eb.msg, ea.msg);

	int fd = memfd_create("onnx", 0);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size) {
		int rc = gn_onnx_opset_fd(&c, fd, &ec);
		FUZZ_CHECK(rc == ra && (ra || c == a), "file: %d (%lld), whole: %d (%lld)", rc, (long long)c, ra,
			   (long long)a);
		FUZZ_CHECK(!ra || strcmp(ea.msg, ec.msg) == 0, "file says '%s', whole '%s'", ec.msg, ea.msg);
	}
	close(fd);
	return 0;
}
