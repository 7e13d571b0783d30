#!/usr/bin/env bash
# The installed package as its users see it: `cmake --install` of the build into a private
# prefix, then two projects of users built against it with find_package (one asking for the
# HTTP layer, one for the resilience layer alone with prometheus-cpp, libpq and yaml-cpp made
# unfindable, one for the generic pool alone and one for the PostgreSQL pool alone, each with
# the outside packages it does not need made unfindable), and the HTTP one again with g++ and
# pkg-config. Each program is run.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
[[ -x $work/prefix/bin/tether ]] || { echo "the tether binary was not installed"; exit 1; }

cmake -S "$here/http_user" -B "$work/http_user" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  > "$work/http_user.log" || { cat "$work/http_user.log"; exit 1; }
cmake --build "$work/http_user" > "$work/http_user_build.log" || { cat "$work/http_user_build.log"; exit 1; }
out=$("$work/http_user/http_user")
[[ $out == "200 hello from an installed tether" ]] || { echo "http_user printed '$out'"; exit 1; }
echo "find_package(tether COMPONENTS http): $out"

cmake -S "$here/resilience_user" -B "$work/resilience_user" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" --no-warn-unused-cli -DCMAKE_DISABLE_FIND_PACKAGE_prometheus-cpp=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON -DCMAKE_DISABLE_FIND_PACKAGE_yaml-cpp=ON \
  > "$work/resilience_user.log" || { cat "$work/resilience_user.log"; exit 1; }
cmake --build "$work/resilience_user" > "$work/resilience_user_build.log" ||
  { cat "$work/resilience_user_build.log"; exit 1; }
out=$("$work/resilience_user/resilience_user")
[[ $out == "breaker open" ]] || { echo "resilience_user printed '$out'"; exit 1; }
echo "find_package(tether COMPONENTS resilience), without prometheus-cpp, libpq, yaml-cpp: $out"

# One component alone, the outside packages it does not need made unfindable: its program must
# configure, build and run.
alone() {
  local name=$1 expected=$2
  shift 2
  cmake -S "$here/$name" -B "$work/$name" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
    --no-warn-unused-cli "$@" > "$work/$name.log" || { cat "$work/$name.log"; exit 1; }
  cmake --build "$work/$name" > "$work/${name}_build.log" || { cat "$work/${name}_build.log"; exit 1; }
  out=$("$work/$name/$name")
  [[ $out == "$expected" ]] || { echo "$name printed '$out'"; exit 1; }
  echo "$name, without $*: $out"
}
alone pool_user "leased 1 then 1" -DCMAKE_DISABLE_FIND_PACKAGE_prometheus-cpp=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON -DCMAKE_DISABLE_FIND_PACKAGE_OpenSSL=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_yaml-cpp=ON
alone pg_user "pg pool: refused" -DCMAKE_DISABLE_FIND_PACKAGE_prometheus-cpp=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_OpenSSL=ON -DCMAKE_DISABLE_FIND_PACKAGE_yaml-cpp=ON

flags=$(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs tether)
g++ -O1 -o "$work/pc_user" "$here/http_user/main.cpp" $flags
out=$("$work/pc_user")
[[ $out == "200 hello from an installed tether" ]] || { echo "the pkg-config build printed '$out'"; exit 1; }
echo "pkg-config --cflags --libs tether: $out"
