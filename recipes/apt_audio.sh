#!/usr/bin/env bash
# More real recordings from Debian packages, as 16 kHz mono 16-bit FLAC, with a manifest.
#
#   bash recipes/apt_audio.sh TARGET          # e.g. local/apt_audio; needs apt-get (root or sudo)
#
# Speech (other voices and languages; one voice per folder):
#   ktuberling-data           words spoken in ~27 languages, one voice each     GPL-2+
#   alsa-utils                the channel names of speaker-test, one voice      GPL-2 (Noise.wav is left out: synthetic)
#   asterisk-prompt-fr-armelle   French prompts, voice "Armelle" (8 kHz GSM)    BSD-style (Indigen Solutions)
#   asterisk-prompt-es-co        Colombian Spanish prompts (8 kHz GSM)          GPL-2
#   asterisk-prompt-it-menardi-gsm  Italian prompts, Paola Dal Zot (8 kHz GSM)  CC-BY-SA-3.0 (Italian)
# Noise (music):
#   asterisk-moh-opsound-wav  music on hold by Macroform                        CC-BY-SA-3.0
#   wesnoth-1.16-music        the game's recorded soundtrack                    GPL-2+
# Noise (sound events, recorded: the kinds of the DNS noise set that ../shared lacks; lists below
# keep out every clip that may hold a voice: announcements, spoken letters, crowds shouting):
#   supertuxkart-data         rain, river, waterfall, restaurant, engines, jet, train, birds,
#                             clock, crashes, thunder (freesound/soundbible)    per file: CC0, CC-BY, CC-BY-SA, GPL
#   tuxpaint-stamps-default   animals, household appliances (washer, vacuum, kettle, toilet),
#                             tools, vehicles, percussion                       GPL-2
#   sonic-pi-samples          vinyl hiss, 3-D printer, industrial loop, phones, door, till, crow  per file: CC0, CC-BY-SA
# Licences as the packages' copyright files state them (read when this recipe was written);
# all allow use for training. The 8 kHz prompts are narrowband and codec-coloured: they sit
# in their own folders (speech_nb/), for use as narrowband targets or not at all.
# Some of the GSM prompts do not decode (ffmpeg: invalid data); they are left out.
# MANIFEST_ONLY=1 recounts an existing TARGET without decoding again.
# Writes TARGET/{speech,speech_nb,noise}/<source>/... and TARGET/MANIFEST.tsv (one row per
# source: folder, package, version, kind, licence, files, hours, voices).
set -euo pipefail
if [[ $# -ne 1 ]]; then echo "usage: $0 TARGET" >&2; exit 2; fi
TARGET=$1
SUDO=(); [[ $EUID -ne 0 ]] && SUDO=(sudo)
PKGS=(ktuberling-data alsa-utils asterisk-prompt-fr-armelle asterisk-prompt-es-co asterisk-prompt-it-menardi-gsm
  asterisk-moh-opsound-wav wesnoth-1.16-music supertuxkart-data tuxpaint-stamps-default sonic-pi-samples ffmpeg)
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
mkdir -p "$TARGET"
TARGET=$(cd "$TARGET" && pwd)

decode() {  # SRC OUT: 16 kHz mono FLAC; clips under 0.5 s or silent (peak below -60 dBFS) are dropped
  local src=$1 out=$2
  mkdir -p "$(dirname "$out")"
  ffmpeg -nostdin -loglevel error -y -i "$src" -ar 16000 -ac 1 -sample_fmt s16 -c:a flac "$out" || { rm -f "$out"; return 0; }
  local dur
  dur=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$out")
  if awk "BEGIN{exit !($dur < 0.5)}"; then rm -f "$out"; return 0; fi
  local peak  # some tuxpaint stamps ship a digitally silent placeholder (-91 dBFS)
  peak=$(ffmpeg -nostdin -i "$out" -af volumedetect -f null - 2>&1 | sed -n 's/.*max_volume: \(-*[0-9.inf]*\) dB.*/\1/p')
  if [[ $peak == -inf ]] || awk "BEGIN{exit !(${peak:--inf} < -60)}"; then rm -f "$out"; fi
}
export -f decode

# jobs: "source file<TAB>output file"
jobs=$(mktemp)
for d in /usr/share/ktuberling/sounds/*/; do
  lang=$(basename "$d")
  find "$d" -maxdepth 1 -name '*.ogg' -type f | while read -r f; do
    printf '%s\t%s\n' "$f" "$TARGET/speech/ktuberling/$lang/$(basename "${f%.ogg}").flac"
  done
done >>"$jobs"
for f in /usr/share/sounds/alsa/*.wav; do
  [[ $(basename "$f") == Noise.wav ]] && continue
  printf '%s\t%s\n' "$f" "$TARGET/speech/alsa/speaker-test/$(basename "${f%.wav}").flac"
done >>"$jobs"
for pair in "fr:asterisk_fr_armelle:asterisk-prompt-fr-armelle" "es:asterisk_es_co:asterisk-prompt-es-co" \
            "it_IT_f_Menardi:asterisk_it_menardi:asterisk-prompt-it-menardi-gsm"; do
  IFS=: read -r dir name pkg <<<"$pair"
  dpkg -L "$pkg" | grep "/usr/share/asterisk/sounds/$dir/.*\.gsm$" | while read -r f; do
    rel=${f#/usr/share/asterisk/sounds/$dir/}
    printf '%s\t%s\n' "$f" "$TARGET/speech_nb/$name/voice/${rel%.gsm}.flac"
  done
done >>"$jobs"
for f in /usr/share/asterisk/moh/*.wav; do
  printf '%s\t%s\n' "$f" "$TARGET/noise/music_moh/$(basename "${f%.wav}").flac"
done >>"$jobs"
for f in /usr/share/games/wesnoth/1.16/data/core/music/*.ogg; do
  printf '%s\t%s\n' "$f" "$TARGET/noise/music_wesnoth/$(basename "${f%.ogg}").flac"
done >>"$jobs"
STK=/usr/share/games/supertuxkart/data
for f in "$STK"/sfx/{airplane_jetEngine,car_accel,car_revup,clock,engine_large,engine_small,exotic-birds,exotic-birds_2,\
fireworks_show,lenautile_restaurant,machine_sound,metal_clang,rain,river_loop,skid,splash,thunder,waterfall_loop_2,\
wooden_bridge,break,crash,crash2,crash3,anvil,hammer}.ogg "$STK"/library/stklib_steamLocomotive_a/steamLocomotive.ogg \
         "$STK"/tracks/scotland/sheep.ogg "$STK"/tracks/black_forest/cow.ogg; do
  printf '%s\t%s\n' "$f" "$TARGET/noise/events_stk/$(basename "$(dirname "$f")")_$(basename "${f%.ogg}").flac"
done >>"$jobs"
TP=/usr/share/tuxpaint/stamps
for d in animals household hobbies/music/percussion naturalforces vehicles seasonal/newyears; do
  find "$TP/$d" -name '*.ogg' ! -name '*_desc*' -type f | while read -r f; do
    rel=${f#"$TP"/}
    printf '%s\t%s\n' "$f" "$TARGET/noise/events_tuxpaint/${rel%.ogg}.flac"
  done
done >>"$jobs"
for n in vinyl_hiss loop_3d_printer loop_industrial ambi_sauna ambi_soft_buzz ambi_glass_hum misc_crow perc_door perc_till \
         mehackit_phone1 mehackit_phone2 mehackit_phone3 mehackit_phone4; do
  printf '%s\t%s\n' "/usr/share/sonic-pi/samples/$n.flac" "$TARGET/noise/events_sonicpi/$n.flac"
done >>"$jobs"
if [[ -z ${MANIFEST_ONLY:-} ]]; then
  awk -F'\t' '{print $1 "\0" $2 "\0"}' "$jobs" | tr -d '\n' | xargs -0 -r -n 2 -P "$(nproc)" bash -c 'decode "$1" "$2"' _ \
    2> >(grep -c . | sed 's/^/decoder messages (files it could not read are left out): /' >&2)
fi
rm -f "$jobs"

# the manifest: hours and file counts measured on what was written
row() {  # FOLDER PACKAGE KIND LICENCE VOICES
  local folder=$1 pkg=$2 kind=$3 licence=$4 voices=$5 files secs version
  files=$(find "$TARGET/$folder" -name '*.flac' | wc -l)
  secs=$(find "$TARGET/$folder" -name '*.flac' -print0 | xargs -0 -r -n 1 -P "$(nproc)" ffprobe -v error \
    -show_entries format=duration -of csv=p=0 | awk '{s += $1} END {printf "%.1f", s}')
  version=$(dpkg-query -W -f='${Version}' "$pkg")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$folder" "$pkg" "$version" "$kind" "$licence" "$files" \
    "$(awk "BEGIN{printf \"%.3f\", $secs / 3600}")" "$voices"
}
nlang=$(find "$TARGET/speech/ktuberling" -mindepth 1 -maxdepth 1 -type d | wc -l)
{
  printf 'folder\tpackage\tversion\tkind\tlicence (copyright file)\tfiles\thours\tvoices\n'
  row speech/ktuberling ktuberling-data speech GPL-2+ "$nlang (one per language)"
  row speech/alsa alsa-utils speech GPL-2 1
  row speech_nb/asterisk_fr_armelle asterisk-prompt-fr-armelle "speech, 8 kHz GSM" "BSD-style (Indigen Solutions)" 1
  row speech_nb/asterisk_es_co asterisk-prompt-es-co "speech, 8 kHz GSM" GPL-2 1
  row speech_nb/asterisk_it_menardi asterisk-prompt-it-menardi-gsm "speech, 8 kHz GSM" "CC-BY-SA-3.0 (Italian)" 1
  row noise/music_moh asterisk-moh-opsound-wav "noise: music" CC-BY-SA-3.0 -
  row noise/music_wesnoth wesnoth-1.16-music "noise: music" GPL-2+ -
  row noise/events_stk supertuxkart-data "noise: sound events" "per file: CC0, CC-BY, CC-BY-SA, GPL" -
  row noise/events_tuxpaint tuxpaint-stamps-default "noise: sound events" GPL-2 -
  row noise/events_sonicpi sonic-pi-samples "noise: sound events" "per file: CC0, CC-BY-SA" -
} >"$TARGET/MANIFEST.tsv"
cat "$TARGET/MANIFEST.tsv"
