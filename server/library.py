"""Built-in exercise library: stretches for sciatica and low-back pain.

All names, summaries, steps and safety cues here were written for the Homework
project, in plain language for patients. The doses follow common public health
guidance for these stretches and are starting points: a practitioner can change
them for each patient when assigning a routine.

Conventions:
- ``slug`` is a permanent key stored in the database. Never rename one; add a
  new exercise instead.
- ``hold_seconds`` is what the player's timer counts for one rep. For moving
  exercises (cat-cow, nerve glides) it is the time one slow rep takes.
- ``reps`` are per side when ``sides`` is "both".
- ``steps`` contain no numbering and no digits: the UI numbers them, and the
  timer shows the dose, so the text stays right if the dose is changed.
- ``image`` is a file name under ``static/exercises/``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinExercise:
    slug: str
    name: str
    summary: str
    steps: tuple[str, ...]
    safety: str
    hold_seconds: int
    reps: int
    sets: int
    sides: str
    image: str


BUILTIN_EXERCISES: tuple[BuiltinExercise, ...] = (
    BuiltinExercise(
        slug="knee-to-chest",
        name="Single knee-to-chest",
        summary="Hugging one knee toward your chest gently stretches your lower back and buttock.",
        steps=(
            "Lie on your back on the floor or a firm bed. Your legs can be straight or bent, "
            "whichever is more comfortable.",
            "Bring one knee up and hold it with both hands, behind your thigh or just below the knee.",
            "Gently pull the knee toward your chest until you feel a mild stretch in your lower back "
            "or buttock.",
            "Hold it there and breathe slowly. Keep your shoulders and the other leg relaxed.",
            "Lower the leg slowly. Then do the same with the other leg.",
        ),
        safety="Stop if pain spreads further down your leg or tingling gets worse. If you have "
        "osteoporosis, ask your practitioner before doing this one.",
        hold_seconds=25,
        reps=3,
        sets=1,
        sides="both",
        image="knee-to-chest.svg",
    ),
    BuiltinExercise(
        slug="piriformis-supine",
        name="Lying figure-4 piriformis stretch",
        summary="Stretches the deep muscles of your buttock, which can press on the sciatic nerve "
        "when they are tight.",
        steps=(
            "Lie on your back with both knees bent and your feet flat on the floor.",
            "Cross one ankle over the other knee, so your legs make a figure-four shape.",
            "Let the crossed knee drop gently out to the side. You should feel a stretch deep in "
            "that buttock.",
            "For a stronger stretch, hold behind the thigh of the bottom leg and slowly pull it "
            "toward you.",
            "Hold and breathe slowly. Then uncross your legs and switch sides.",
        ),
        safety="Stop if you feel pain inside the hip or knee joint, or if pain or tingling "
        "spreads down your leg.",
        hold_seconds=30,
        reps=4,
        sets=1,
        sides="both",
        image="piriformis-supine.svg",
    ),
    BuiltinExercise(
        slug="figure-4-seated",
        name="Seated figure-4 glute stretch",
        summary="A chair version of the buttock stretch, handy at work or when getting down to "
        "the floor is hard.",
        steps=(
            "Sit near the front of a steady chair with both feet flat on the floor.",
            "Lift one leg and rest that ankle on the other knee.",
            "Sit up tall. Then lean forward slowly from your hips, keeping your back straight.",
            "Stop when you feel a stretch in the buttock of the crossed leg, and hold there.",
            "Sit back up, put your foot down, and swap sides.",
        ),
        safety="Stop if leaning forward sends pain down your leg or makes numbness or tingling "
        "worse.",
        hold_seconds=15,
        reps=3,
        sets=1,
        sides="both",
        image="figure-4-seated.svg",
    ),
    BuiltinExercise(
        slug="pelvic-tilt",
        name="Pelvic tilt",
        summary="A small, gentle rocking of your pelvis that eases a stiff lower back and wakes up "
        "your tummy muscles.",
        steps=(
            "Lie on your back with your knees bent and your feet flat, about hip-width apart.",
            "Tighten your tummy muscles and gently press the small of your back into the floor. "
            "Your pelvis will tip up a little.",
            "Hold it there and keep breathing normally.",
            "Relax and let your back go back to its natural curve.",
        ),
        safety="Stop if the movement gives you sharp pain in your back, or pain that spreads "
        "into your leg.",
        hold_seconds=5,
        reps=10,
        sets=1,
        sides="none",
        image="pelvic-tilt.svg",
    ),
    BuiltinExercise(
        slug="knee-rolls",
        name="Knee rolls",
        summary="Slowly rolling your knees from side to side loosens a stiff lower back.",
        steps=(
            "Lie on your back with your knees bent and together, and your feet flat on the floor.",
            "Rest your arms out to the sides and keep your shoulders on the floor.",
            "Let both knees roll slowly to one side, only as far as feels comfortable.",
            "Hold there and breathe. Then bring your knees back to the middle.",
            "Roll them to the other side in the same way.",
        ),
        safety="Stop if the twist gives you sharp pain, or if pain spreads further down your leg.",
        hold_seconds=10,
        reps=3,
        sets=1,
        sides="both",
        image="knee-rolls.svg",
    ),
    BuiltinExercise(
        slug="cat-cow",
        name="Cat-cow",
        summary="A slow rocking movement on your hands and knees that gently moves your whole spine.",
        steps=(
            "Get onto your hands and knees. Put your hands under your shoulders and your knees "
            "under your hips.",
            "Breathe out and round your back up toward the ceiling, letting your head drop gently, "
            "like a cat.",
            "Breathe in and let your back sag gently down as you lift your head a little.",
            "Move slowly and smoothly between the two. Stay in a range that feels comfortable.",
        ),
        safety="Stop if either position gives you sharp pain or sends pain down your leg.",
        hold_seconds=4,
        reps=10,
        sets=1,
        sides="none",
        image="cat-cow.svg",
    ),
    BuiltinExercise(
        slug="bottom-to-heels",
        name="Bottom-to-heels stretch",
        summary="Sitting back toward your heels stretches and relaxes your lower back.",
        steps=(
            "Start on your hands and knees, with your knees under your hips.",
            "Slowly sit back, moving your bottom toward your heels. Let your hands slide forward "
            "on the floor.",
            "Go only as far as feels comfortable, and hold for one deep breath.",
            "Come back up onto your hands and knees, then repeat.",
        ),
        safety="Stop if you feel sharp pain in your back or knees, or if pain spreads down your leg.",
        hold_seconds=5,
        reps=10,
        sets=1,
        sides="none",
        image="bottom-to-heels.svg",
    ),
    BuiltinExercise(
        slug="hamstring-90-90",
        name="Lying 90/90 hamstring stretch",
        summary="Stretches the muscles at the back of your thigh, which often get tight and pull on "
        "a sore lower back.",
        steps=(
            "Lie on your back. Lift one leg and hold behind the thigh with both hands, so the "
            "knee points at the ceiling.",
            "Keep the thigh still and slowly straighten your knee until you feel a stretch at the "
            "back of the thigh.",
            "Your leg does not need to go straight. Stop where the stretch feels firm but "
            "comfortable, and hold.",
            "Breathe slowly. Then bend the knee, lower the leg and swap sides.",
        ),
        safety="Stop if you feel tingling, burning or pain running down your leg: that means the "
        "nerve is being pulled, not the muscle.",
        hold_seconds=60,
        reps=1,
        sets=1,
        sides="both",
        image="hamstring-90-90.svg",
    ),
    BuiltinExercise(
        slug="prone-on-elbows",
        name="Prone on elbows",
        summary="Lying on your front, propped on your elbows, gently arches your lower back and "
        "often eases back and leg pain.",
        steps=(
            "Lie on your front on the floor or a firm bed.",
            "Prop yourself up on your forearms, with your elbows under your shoulders.",
            "Let your hips and tummy stay relaxed on the floor, and breathe normally.",
            "Hold, then lower yourself down slowly and rest for a moment.",
        ),
        safety="Lie flat again and stop if pain spreads further down your leg or your back pain "
        "gets sharply worse.",
        hold_seconds=30,
        reps=3,
        sets=1,
        sides="none",
        image="prone-on-elbows.svg",
    ),
    BuiltinExercise(
        slug="sciatic-nerve-glide",
        name="Seated sciatic nerve glide",
        summary="A gentle flossing movement that helps the sciatic nerve slide freely. You keep "
        "moving instead of holding a stretch.",
        steps=(
            "Do this later in the day, not in the first couple of hours after you get up.",
            "Sit up straight on a chair with both feet on the floor.",
            "Slowly straighten one knee and pull your toes toward you, while you tip your head back "
            "to look up.",
            "Then bend the knee back down and bring your chin toward your chest.",
            "Keep it smooth and easy, like a slow swing, with no hold at either end.",
        ),
        safety="It should feel like a mild pull, not pain. Stop if it brings on tingling or "
        "numbness that lasts after you stop.",
        hold_seconds=5,
        reps=10,
        sets=1,
        sides="both",
        image="sciatic-nerve-glide.svg",
    ),
    BuiltinExercise(
        slug="sciatic-slider-supine",
        name="Lying sciatic nerve slider",
        summary="A lying-down nerve glide that gently moves the sciatic nerve without holding a "
        "stretch.",
        steps=(
            "Lie on your back. Lift one leg and hold behind the thigh with both hands, so the "
            "knee points at the ceiling.",
            "Slowly straighten the knee as far as is comfortable while you pull your toes toward you.",
            "Then bend the knee again and point your toes away.",
            "Keep moving smoothly between the two without stopping to hold.",
        ),
        safety="Stop if it brings on tingling, numbness or pain down your leg that does not settle "
        "quickly when you stop.",
        hold_seconds=5,
        reps=10,
        sets=1,
        sides="both",
        image="sciatic-slider-supine.svg",
    ),
    BuiltinExercise(
        slug="hamstring-standing",
        name="Standing hamstring stretch",
        summary="Stretches the back of your thigh while standing, using a low step or stair.",
        steps=(
            "Stand facing a low step or stair. Hold on to something steady if you need to.",
            "Put one heel on the step, with that leg nearly straight and your toes pointing up.",
            "Keep your back straight and lean forward slowly from your hips until you feel a "
            "stretch behind the thigh.",
            "Hold and breathe slowly. Then stand up tall, step down and swap legs.",
        ),
        safety="Stop if you feel tingling or pain running down your leg, or if you feel unsteady "
        "on your standing leg.",
        hold_seconds=30,
        reps=2,
        sets=1,
        sides="both",
        image="hamstring-standing.svg",
    ),
)
