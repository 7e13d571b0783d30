#include "tether/http/blocking_client.hpp"

#include <asio/co_spawn.hpp>
#include <asio/use_future.hpp>

namespace tether::http {

blocking_client::blocking_client(client_options options, metrics::registry* registry)
    : work_{io_.get_executor()},
      client_{client::create(io_.get_executor(), std::move(options), registry)}, thread_{[this] {
        io_.run();
      }} {}

blocking_client::~blocking_client() {
  // Closing lets the pools' housekeepers end and every lease come home; the io_context then has
  // nothing left but the work guard.
  asio::co_spawn(io_, client_->async_close(), asio::use_future).wait();
  work_.reset();
  io_.stop();
  thread_.join();
}

client_result blocking_client::send(request r) {
  return client_->send(std::move(r));
}

} // namespace tether::http
