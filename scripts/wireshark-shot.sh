#!/usr/bin/env bash
# A screenshot of Wireshark showing a `vpclab capture` file: a Comment column (frame.comment) in the
# packet list, the first dropped frame selected, its Packet comments expanded. Makes
# docs/wireshark-drop.png (see README, "vpclab capture"); for documentation only, not CI.
# Wireshark runs on its own Xvfb display with a throwaway configuration, so the user's is untouched.
#   usage: scripts/wireshark-shot.sh CAPTURE.pcapng OUT.png
#   needs (Debian): apt-get install wireshark-qt xvfb xdotool imagemagick; optipng is used if present
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 CAPTURE.pcapng OUT.png" >&2; exit 2; }
capture=$1 out=$2
for tool in wireshark Xvfb xdotool import convert; do
  command -v "$tool" >/dev/null || {
    echo "$0: $tool not found; on Debian: apt-get install wireshark-qt xvfb xdotool imagemagick" >&2
    exit 1
  }
done
[ -r "$capture" ] || { echo "$0: cannot read $capture" >&2; exit 1; }

width=1760 height=560
dir=$(mktemp -d)
xvfb= ws=
trap 'kill $ws $xvfb 2>/dev/null || true; wait || true; rm -rf "$dir"' EXIT

# Columns, their widths, the window's place and size, and no byte pane; privs: no root warning.
mkdir "$dir/config"
cat >"$dir/config/preferences" <<'EOF'
gui.column.format: "No.", "%m", "Interface", "%Cus:frame.interface_name", "Source", "%s", "Destination", "%d", "Protocol", "%p", "Info", "%i", "Comment", "%Cus:frame.comment"
gui.packet_list_show_minimap: FALSE
EOF
cat >"$dir/config/recent" <<'EOF'
gui.byte_view_show: FALSE
gui.packet_diagram_show: FALSE
gui.geometry_main_upper_pane: 318
column.width: %m, 60, "%Cus:frame.interface_name", 72, %s, 112, %d, 106, %p, 62, %i, 290, "%Cus:frame.comment", 1048
EOF
cat >"$dir/config/recent_common" <<EOF
gui.geometry_main_x: 0
gui.geometry_main_y: 0
gui.geometry_main_width: $width
gui.geometry_main_height: $height
gui.geometry_main_maximized: FALSE
privs.warn_if_elevated: FALSE
EOF

Xvfb -displayfd 3 -screen 0 "${width}x${height}x24" -nolisten tcp 3>"$dir/display" 2>"$dir/xvfb.log" &
xvfb=$!
for _ in $(seq 50); do [ -s "$dir/display" ] && break; sleep 0.1; done
[ -s "$dir/display" ] || { echo "$0: Xvfb did not start:" >&2; cat "$dir/xvfb.log" >&2; exit 1; }
export DISPLAY=":$(cat "$dir/display")" WIRESHARK_CONFIG_DIR="$dir/config" XDG_RUNTIME_DIR="$dir"

wireshark -r "$capture" -J 'frame.comment contains "dropped"' >"$dir/wireshark.log" 2>&1 &
ws=$!
timeout 60 xdotool search --sync --onlyvisible --class wireshark >/dev/null || {
  echo "$0: no Wireshark window within 60 s:" >&2; cat "$dir/wireshark.log" >&2; exit 1
}
sleep 3                                          # the file is read and the drop selected
xdotool mousemove $((width / 2)) $((height - 40)) click 1   # focus the details pane's empty part
xdotool key Home Right Down                      # Packet comments: select, expand, its comment
xdotool mousemove $((width - 1)) $((height - 1)) # no hover highlight
sleep 1
import -window root -crop "${width}x${height}+0+0" +repage -strip -colors 64 "PNG8:$out"
if command -v optipng >/dev/null; then optipng -quiet -o5 "$out"; fi
echo "$out: $(wireshark --version | head -1)"
