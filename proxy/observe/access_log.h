// AccessLog: Traefik's access log (common, genericCLF or json), one line per exchange. The worker
// that served an exchange filters and formats its line into its own ring (no lock, no allocation:
// HP-1, HP-2, HP-7); one writer thread drains the rings to the file or stdout. A full ring or a
// failing write (a full disk) drops lines and counts them: the data plane never waits for the log.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/result.h"
#include "config/static_config.h"
#include "proxy/observe/exchange_record.h"

namespace berth::proxy::observe {

/// One accessLog config compiled for formatting: the layout, the filters, the field and header
/// modes. Thread: any (const after construction).
class LineFormatter {
 public:
  explicit LineFormatter(const config::AccessLogConfig& config);

  /// Traefik's filters: true when no filter is set or one matches (DownstreamStatus in a range, a
  /// retry, longer than minDuration). Exchanges of `@internal` routers only with addInternals.
  bool keep(const ExchangeRecord& r) const;
  /// Writes the line of `r`, '\n' included, to out[0..cap); returns its length, or 0 when even the
  /// line without its header fields does not fit. `utc_offset_s`: the local zone's offset from UTC
  /// (StartLocal, json's `time`). No allocation.
  size_t format(const ExchangeRecord& r, int32_t utc_offset_s, char* out, size_t cap) const;

  enum class Mode : uint8_t { kKeep, kDrop, kRedact };

 private:
  enum class Layout : uint8_t { kCommon, kGenericClf, kJson };
  struct Out;
  size_t format_clf(const ExchangeRecord& r, int32_t utc_offset_s, Out& o) const;
  size_t format_json(const ExchangeRecord& r, int32_t utc_offset_s, Out& o, bool with_headers) const;
  Mode header_mode(std::string_view name) const;
  void header_fields(Out& o, bool& first, const std::vector<http::Header>* headers, std::string_view prefix,
                     bool request) const;
  std::string_view header_value_mode(const ExchangeRecord& r, std::string_view name, Mode& mode) const;

  Layout layout_ = Layout::kCommon;
  bool keep_[40] = {};  ///< per field (access_log.cpp's Field)
  Mode headers_default_ = Mode::kDrop;
  std::vector<std::pair<std::string, Mode>> header_modes_;
  bool any_header_kept_ = false;  ///< some header may be written (else the header scan is skipped)
  bool add_internals_ = false;
  bool has_filters_ = false;
  std::vector<std::pair<int, int>> status_ranges_;
  bool retry_attempts_ = false;
  int64_t min_duration_ns_ = 0;
};

/// The access log: per-worker rings and the writer thread. Lives until stop() (after the workers).
class AccessLog {
 public:
  struct Options {
    size_t ring_bytes = 0;     ///< per worker, rounded up to a power of two; 0: 1 MiB, more for a large bufferingSize
    bool start_writer = true;  ///< false: no writer thread, the owner calls drain() (tests)
  };

  /// Opens filePath (creating its directories; stdout when empty) and starts the writer. An error
  /// names the file. Thread: control.
  static Result<std::unique_ptr<AccessLog>> open(const config::AccessLogConfig& config, size_t workers,
                                                 Options options);
  static Result<std::unique_ptr<AccessLog>> open(const config::AccessLogConfig& config, size_t workers) {
    return open(config, workers, Options{});
  }
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  /// Filters and formats the line of `r` into worker `worker`'s ring; a line that does not fit is
  /// dropped and counted. No lock, no allocation. Thread: that worker (one producer per ring).
  void record(size_t worker, const ExchangeRecord& r);
  /// Asks the writer to reopen filePath (SIGUSR1, for logrotate): lines drained from then on go to
  /// the file now at that path. A failed open keeps the old file. Thread: any.
  void reopen();
  /// Lines dropped so far: full rings, lines too long, failed writes. Thread: any.
  uint64_t dropped_lines() const;
  /// Lines written so far. Thread: any.
  uint64_t written_lines() const { return written_.load(std::memory_order_relaxed); }
  /// Writes what the rings hold now (and reopens if asked). Only without a writer thread. Thread: the owner.
  void drain();
  /// Writes every line recorded so far, stops the writer and closes the file. Idempotent. Thread: control.
  void stop();

 private:
  struct Ring;
  AccessLog(const config::AccessLogConfig& config, size_t workers, size_t ring_bytes);
  void run();
  size_t drain_rings();
  size_t write_ring(Ring& ring);
  void reopen_file();
  void refresh_utc_offset();
  bool has_work() const;
  void wake_writer();
  std::string_view target_name() const { return path_.empty() ? std::string_view("stdout") : path_; }

  LineFormatter formatter_;
  std::string path_;  ///< "" = stdout
  int fd_ = 1;
  uint64_t buffering_ = 0;  ///< bufferingSize
  std::vector<std::unique_ptr<Ring>> rings_;
  std::atomic<int32_t> utc_offset_s_{0};
  std::atomic<uint32_t> writer_sleeping_{0};  ///< a futex word: 1 while the writer waits for a worker's wake
  std::atomic<bool> stopping_{false};
  std::atomic<bool> reopen_requested_{false};
  std::atomic<uint64_t> writer_dropped_{0};
  std::atomic<uint64_t> written_{0};
  bool failing_ = false;  ///< the last write failed (logged once per episode)
  int64_t offset_refreshed_ns_ = 0;
  bool stopped_ = false;
  std::thread writer_;
};

}  // namespace berth::proxy::observe
