"""Word lists of the open-vocabulary grammar (data, not logic).

Plain, frequent English words that flite and espeak-ng pronounce correctly from their lexicons, grouped by the
slot they fill in `grammar.OPEN_TEMPLATES`. Together they give well over 1,000 distinct words, so that an LLM's
language prior (which word plausibly follows which) matters, unlike the 50-odd words of the GRID grammar.
"""

NOUNS = """
apple table chair window garden river bottle letter picture kitchen basket bridge candle doctor engine farmer
forest island jacket kettle ladder market needle orange pencil pocket rabbit saddle teacher tiger village wagon
blanket bucket camera castle cookie dinner drawer feather finger flower hammer helmet holiday hospital ladybird
lemon library lizard machine meadow minute monkey mountain museum napkin office onion oven palace parcel parrot
pepper piano pillow planet potato puppy puzzle question radio ribbon rocket sandwich scarf shadow shoulder
silver singer sister soldier spider spoon station story street student sugar summer supper sweater ticket
tomato towel tower tractor trumpet tunnel turtle umbrella valley violin wallet water weather whistle winter
wizard yellow zebra airport anchor angel animal answer artist author baby bakery balloon banana bank barrel
beach bear beard bed bell belt bicycle bird biscuit blade boat body bone book boot bowl box boy bread brick
brother brush butter button cabin cake calendar canal captain car card carpet carrot cart cat cave ceiling
cellar chain cheese cherry chicken child chimney church circle city cliff clock cloud coat coffee coin collar
compass computer cook corner cottage cousin cow crown cup curtain cushion daughter desk diamond dog doll
dolphin donkey door dragon dream dress drum duck eagle earth egg elephant envelope eye face factory family
fence field film fire fish flag floor fork fountain fox friend frog fruit game gate ghost gift girl glass
glove goat gold grass guitar hat heart hill horse hotel house ice island jar jewel judge key king kite
knife lake lamp leaf lion lock lorry map mirror moon mother mouse mouth nail neck nest net newspaper night
nose nurse ocean oil owl page paint pan paper park path pearl pen person pie pig pilot pin plate pond pool
post prince princess queen rain ring road robot roof room rope rose sail salt sand school sea seed sheep
shell ship shirt shoe shop sky snake snow sock song stone storm sun table tea tent test thread throat
tooth toy train tree truck village wall whale wheel wind wing wolf wood word world yard
account engineer actor adventure advice agent album alarm apron arrow attic audience autumn avenue badge
bamboo bandage barn battery blossom bonnet border bottom branch breakfast breeze brick bubble budget buffalo
cabinet cable canvas carriage ceremony champion channel chapter chest chocolate circus clerk climate coast
comet concert contract cotton council counter courage crab cradle crystal customer daisy dancer dentist
diary dinosaur director dust editor elbow emperor evening fabric fairy festival flute fossil gallery garlic
glacier goose grape guest harvest hedge honey hook horizon hut insect iron ivory jungle kingdom knee lantern
lawyer leather lettuce lighthouse lobster magnet manager marble meal melon merchant message metal mirror
mushroom musician nephew noodle orchard painter pants parade peach peanut pebble penguin pirate pumpkin
quilt raft reporter rescue rhythm saucer scissors sculptor shepherd shovel signal skeleton sledge spring
squirrel stamp statue stove stranger sunrise sunset swan sword tailor teapot thunder tortoise traveller
treasure trolley tulip uniform vase vessel volcano waiter waterfall weaver wheat widow witness
""".split()

ADJECTIVES = """
old new big small tall short long young bright dark heavy light quiet loud warm cold hot cool soft hard
happy sad angry calm clever brave lazy busy early late empty full fresh clean dirty dry wet strong weak
rich poor sharp smooth rough thin thick wide narrow deep shallow sweet bitter sour salty quick slow gentle
kind cruel proud shy honest famous strange simple plain fancy modern ancient broken golden silver wooden
purple orange yellow green blue red white black brown pink grey lovely ugly pretty handsome tiny huge giant
little friendly lonely lucky hungry thirsty sleepy tired curious careful careless polite rude funny serious
noisy silent windy sunny rainy cloudy foggy frozen bitter spare secret private public local foreign
favourite special ordinary perfect terrible wonderful horrible pleasant awful useful useless expensive
cheap precious valuable simple gentle nervous anxious eager excited bored patient wise foolish silly
""".split()

# (base, past) pairs of transitive verbs; both forms are used by the templates.
VERBS = [
    tuple(pair.split("/"))
    for pair in """
find/found paint/painted carry/carried open/opened close/closed clean/cleaned fix/fixed sell/sold buy/bought
bring/brought take/took move/moved lift/lifted push/pushed pull/pulled wash/washed fill/filled drop/dropped
catch/caught throw/threw hold/held keep/kept hide/hid show/showed watch/watched visit/visited follow/followed
build/built break/broke cook/cooked bake/baked borrow/borrowed lend/lent send/sent mend/mended polish/polished
pack/packed wrap/wrapped chase/chased feed/fed lose/lost need/needed want/wanted like/liked love/loved
hate/hated check/checked count/counted draw/drew read/read write/wrote sign/signed touch/touched kick/kicked
climb/climbed cross/crossed enter/entered leave/left reach/reached pass/passed order/ordered answer/answered
call/called help/helped meet/met thank/thanked warn/warned ask/asked invite/invited choose/chose pick/picked
plant/planted water/watered burn/burned light/lit heat/heated cut/cut shut/shut steal/stole save/saved
guard/guarded weigh/weighed measure/measured test/tested try/tried use/used share/shared serve/served
deliver/delivered return/returned remember/remembered forget/forgot notice/noticed describe/described
explain/explained discover/discovered collect/collected repair/repaired replace/replaced examine/examined
admire/admired arrange/arranged attack/attacked boil/boiled bury/buried capture/captured carve/carved
chop/chopped cover/covered dig/dug drag/dragged dust/dusted fold/folded grab/grabbed greet/greeted hang/hung
hug/hugged inspect/inspected iron/ironed kiss/kissed knit/knitted lock/locked mark/marked mix/mixed
offer/offered peel/peeled pour/poured print/printed protect/protected punish/punished rescue/rescued
scrub/scrubbed shake/shook sketch/sketched slice/sliced spill/spilled squeeze/squeezed stir/stirred
study/studied sweep/swept tear/tore tie/tied trust/trusted unpack/unpacked wake/woke welcome/welcomed
""".split()
]

NAMES = """
anna ben carol david emma frank grace henry isabel jack kate laura mark nina oliver paul rachel sam tom
victor william alice bob charles diana edward fiona george helen ian julia kevin lucy martin nancy peter
robert sarah steven susan thomas walter mary james john linda michael patricia jennifer richard barbara
joseph jessica daniel karen matthew lisa andrew betty joshua sandra brian ashley chris donna
""".split()

PLACES = """
station market garden kitchen library office school hospital museum harbour church bakery airport village
city forest beach island cottage castle factory hotel theatre cinema stadium farm park river valley
mountain bridge tower cellar attic garage corridor hallway classroom laboratory restaurant cafe
""".split()

# Multi-word time expressions, used as a unit.
TIMES = [
    "today",
    "tonight",
    "yesterday",
    "tomorrow",
    "this morning",
    "this evening",
    "last night",
    "last week",
    "next week",
    "next month",
    "on monday",
    "on tuesday",
    "on wednesday",
    "on thursday",
    "on friday",
    "on saturday",
    "on sunday",
    "in the morning",
    "in the afternoon",
    "after lunch",
    "before dinner",
    "at noon",
    "at midnight",
    "every day",
    "once again",
    "in the spring",
    "in the autumn",
    "in the winter",
    "during the summer",
    "before breakfast",
]

DEGREES = "very rather quite really almost always never sometimes often too".split()
PREPOSITIONS = "near behind under above beside inside outside across along through towards into".split()
DETERMINERS = "the this that my your his her our their every".split()
RELATIVES = "mother father sister brother uncle aunt cousin neighbour friend teacher grandmother".split()
